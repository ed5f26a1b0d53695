// The scheduler's dynamic config, as Dragonfly's scheduler dynconfig reads it: its own record
// from the manager (GetScheduler, which carries scheduler_cluster.config), at start and every
// dynConfig.refreshInterval, applied without restart. The keys applied are Dragonfly's
// SchedulerClusterConfig (manager/types/scheduler_cluster.go): candidate_parent_limit and
// filter_parent_limit. As in Dragonfly's scheduling, a key the cluster sets wins over the local
// scheduler.yaml; one that is absent or 0 (Go's omitted zero) leaves the local value. A value
// that is not an integer within the local key's bounds is logged once and ignored; so is a
// config that is not a JSON object. When the manager cannot be reached the limits in force stay.
import type { Logger } from "pino";
import { ClusterConfigReader } from "../common/cluster-config.js";
import { errorMessage } from "../common/errors.js";
import { runEvery, type Periodic } from "../common/periodic.js";
import type { Scheduler } from "../gen/manager/v2/manager.js";
import { SchedulerConfigSchema } from "./config.js";
import type { ParentLimits, Scheduling } from "./scheduling/scheduling.js";

const LOCAL = SchedulerConfigSchema.properties.scheduler.properties;

/** The cluster config's key (snake_case, as the manager stores it) for each limit. */
const KEYS: ReadonlyArray<readonly [string, keyof ParentLimits]> = [
  ["candidate_parent_limit", "candidateParentLimit"],
  ["filter_parent_limit", "filterParentLimit"],
];

export interface SchedulerDynconfigOptions {
  /** ms between reads; 0 reads only at start. */
  refreshIntervalMs: number;
  /** The local scheduler.yaml values, in force wherever the cluster sets nothing valid. */
  local: ParentLimits;
}

export class SchedulerDynconfig {
  private readonly reader: ClusterConfigReader;
  private periodic: Periodic | undefined;
  private unreachable = false;

  constructor(
    private readonly getScheduler: () => Promise<Scheduler>,
    private readonly scheduling: Scheduling,
    private readonly opts: SchedulerDynconfigOptions,
    private readonly log: Logger,
  ) {
    this.reader = new ClusterConfigReader("the scheduler cluster's config", log);
  }

  /** Reads the cluster config once and applies it; never rejects (failures are logged). */
  async refresh(): Promise<void> {
    let scheduler: Scheduler;
    try {
      scheduler = await this.getScheduler();
    } catch (e) {
      if (!this.unreachable) this.log.warn({ err: errorMessage(e) }, "reading the cluster config from the manager failed; keeping the parent limits in force");
      this.unreachable = true;
      return;
    }
    this.unreachable = false;
    const limits = this.limitsFrom(scheduler.schedulerCluster?.config);
    const now = this.scheduling.parentLimits;
    if (limits.candidateParentLimit === now.candidateParentLimit && limits.filterParentLimit === now.filterParentLimit) return;
    this.scheduling.setParentLimits(limits);
    this.log.info({ ...limits, cluster: scheduler.schedulerClusterId }, "applied the scheduler cluster's config");
  }

  private limitsFrom(raw: Buffer | undefined): ParentLimits {
    const { candidateParentLimit, filterParentLimit } = this.opts.local;
    const limits: ParentLimits = { candidateParentLimit, filterParentLimit };
    const config = this.reader.parse(raw);
    if (!config) return limits;
    for (const [key, field] of KEYS) {
      const { minimum = 1, maximum = Number.MAX_SAFE_INTEGER } = LOCAL[field];
      limits[field] = this.reader.integer(config, key, minimum, maximum, limits[field]) ?? limits[field];
    }
    return limits;
  }

  /** The first read, then one every refresh interval, until stop(). */
  async start(): Promise<void> {
    await this.refresh();
    if (this.opts.refreshIntervalMs > 0) this.periodic = runEvery(this.opts.refreshIntervalMs, () => this.refresh(), () => undefined);
  }

  async stop(): Promise<void> {
    await this.periodic?.stop();
  }
}
