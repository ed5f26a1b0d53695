// Scheduler discovery from the manager (Dragonfly's dynconfig), used when `manager.addr` is
// set: ListSchedulers at start and every `dynconfig.refreshInterval`, health-check each
// scheduler, keep the healthy ones of the first healthy scheduler's cluster (the manager
// returns the best-matching cluster first), and hand them to the SchedulerPool, and that
// cluster's client config to whoever applies it (client-config.ts). When the
// manager is unreachable or no scheduler is healthy, the current list stays: losing the
// control plane must not stop downloads already possible.
import { credentials, Metadata, type ChannelCredentials } from "@grpc/grpc-js";
import type { Logger } from "../../common/logger.js";
import { checkServing } from "../../common/grpc/health.js";
import { VERSION } from "../../common/version.js";
import { ManagerClient, SourceType, type ListSchedulersResponse, type Scheduler } from "../../gen/manager/v2/manager.js";
import type { SchedulerPool } from "./pool.js";
import { errorMessage } from "../../common/errors.js";

export interface DynconfigOptions {
  managerAddr: string;
  /** ms between refreshes. */
  refreshIntervalMs: number;
  /** Who asks: the manager matches the cluster by these (CIDR, hostname, IDC, location). */
  hostname: string;
  ip: string;
  idc: string;
  location: string;
  /** Non-zero pins one scheduler cluster. */
  schedulerClusterId: number;
  seedPeer: boolean;
  /** The `manager` section's caCert/cert/key; plaintext when absent. */
  managerCredentials?: ChannelCredentials;
  /** Deadline of ListSchedulers and of each health check (ms). */
  rpcTimeoutMs?: number;
  /**
   * Given the chosen cluster's client_config (seed_client_config on a seed peer) at every
   * refresh that found a healthy scheduler (client-config.ts).
   */
  onClientConfig?(raw: Buffer | undefined): void;
}

const addrOf = (s: Scheduler) => (s.ip.includes(":") ? `[${s.ip}]:${s.port}` : `${s.ip}:${s.port}`);

export class Dynconfig {
  private readonly manager: InstanceType<typeof ManagerClient>;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<boolean> | undefined;
  private stopped = false;
  /** The scheduler cluster the current list belongs to (0 before the first success). */
  clusterId = 0;

  constructor(
    private readonly opts: DynconfigOptions,
    private readonly pool: SchedulerPool,
    private readonly log: Logger,
    /** Called after a periodic refresh changed the list (e.g. to announce the host to new schedulers). */
    private readonly onChange: (addrs: string[]) => Promise<unknown> = () => Promise.resolve(),
  ) {
    this.manager = new ManagerClient(opts.managerAddr, opts.managerCredentials ?? credentials.createInsecure());
  }

  private get timeoutMs(): number {
    return this.opts.rpcTimeoutMs ?? 10_000;
  }

  private listSchedulers(): Promise<Scheduler[]> {
    const o = this.opts;
    return new Promise((resolve, reject) => {
      this.manager.listSchedulers(
        {
          sourceType: o.seedPeer ? SourceType.SEED_PEER_SOURCE : SourceType.PEER_SOURCE,
          hostname: o.hostname,
          ip: o.ip,
          idc: o.idc || undefined,
          location: o.location || undefined,
          version: VERSION,
          commit: "",
          schedulerClusterId: o.schedulerClusterId,
        },
        new Metadata(),
        { deadline: Date.now() + this.timeoutMs },
        (err: Error | null, res?: ListSchedulersResponse) => (err ? reject(err) : resolve(res?.schedulers ?? [])),
      );
    });
  }

  private healthy(addr: string): Promise<boolean> {
    // Schedulers are checked as they will be used: with the pool's credentials.
    return checkServing(addr, this.pool.credentials, this.timeoutMs);
  }

  /**
   * Asks the manager now and applies the result; resolves true when the pool's list changed.
   * Never rejects: failures are logged and leave the list as it is.
   */
  refresh(): Promise<boolean> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<boolean> {
    let schedulers: Scheduler[];
    try {
      schedulers = await this.listSchedulers();
    } catch (e) {
      this.log.warn({ manager: this.opts.managerAddr, err: errorMessage(e) }, "ListSchedulers failed; keeping the current schedulers");
      return false;
    }
    const health = await Promise.all(schedulers.map((s) => this.healthy(addrOf(s))));
    let clusterId: number | undefined;
    const addrs: string[] = [];
    schedulers.forEach((s, i) => {
      if (!health[i]) return;
      clusterId ??= s.schedulerClusterId;
      if (s.schedulerClusterId === clusterId && !addrs.includes(addrOf(s))) addrs.push(addrOf(s));
    });
    if (this.stopped) return false;
    if (clusterId === undefined) {
      this.log.warn({ manager: this.opts.managerAddr, listed: schedulers.length }, "no healthy scheduler from the manager; keeping the current schedulers");
      return false;
    }
    this.clusterId = clusterId;
    const cluster = schedulers.find((s, i) => health[i] && s.schedulerClusterId === clusterId)?.schedulerCluster;
    this.opts.onClientConfig?.(this.opts.seedPeer ? cluster?.seedClientConfig : cluster?.clientConfig);
    const current = this.pool.all().map(([a]) => a);
    const changed = current.length !== addrs.length || addrs.some((a) => !current.includes(a));
    if (changed) {
      this.pool.set(addrs);
      this.log.info({ schedulers: addrs, schedulerClusterId: clusterId }, "schedulers from the manager");
    }
    return changed;
  }

  /** Refreshes every interval; the first refresh is the caller's (awaited at start). */
  start(): void {
    const schedule = () => {
      this.timer = setTimeout(() => {
        void this.refresh()
          .then((changed) => (changed && !this.stopped ? this.onChange(this.pool.all().map(([a]) => a)) : undefined))
          .catch((e: unknown) => this.log.warn({ err: errorMessage(e) }, "applying new schedulers failed"))
          .finally(() => {
            if (!this.stopped) schedule();
          });
      }, this.opts.refreshIntervalMs);
      this.timer.unref();
    };
    schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.refreshing;
    this.manager.close();
  }
}
