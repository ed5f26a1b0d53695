// Runs jobs stored in the database. Jobs are claimed with a lease (SELECT … FOR UPDATE SKIP
// LOCKED), so several managers can share one PostgreSQL and a job whose manager died is picked
// up again when its lease runs out — jobs survive restarts. While running a job stays PENDING
// (the only in-progress state Harbor understands) and ends SUCCESS or FAILURE with one
// `job_states` entry per cluster. Credentials in the args are dropped once the job is done;
// secrets (object storage, HDFS, hub tokens) never were in them (secrets.ts): they are joined back from this
// manager's memory just before dispatch.
//
// A job canceled through the API (service.ts cancel) is FAILURE with no lease before its run
// ends: the run is aborted — at once on this manager (`cancel`), at the next lease renewal on
// another — so it starts no further RPC, stops waiting, and writes no outcome over the cancel.
import type { Logger } from "../../common/logger.js";
import type { SsrfPolicy } from "../../common/ssrf.js";
import type { Database } from "../db/database.js";
import type { JobRow } from "../db/rows.js";
import type { ManagerMetrics } from "../metrics.js";
import { scrubArgs } from "./args.js";
import { heldCredentials, needsPreheatSecrets, type PreheatSecrets } from "./source-args.js";
import { JobSecrets } from "./secrets.js";
import { jobClusterIds } from "./service.js";
import { ClientPool, type ClientCredentials } from "./clients.js";
import { runDeleteTask, runGetTask, runPreheat, runSyncPeers, type ExecutorDeps, type JobState } from "./executors.js";
import { ImageResolver } from "../../common/oci/resolver.js";
import { errorMessage } from "../../common/errors.js";
import { enqueueJobEvent } from "../webhooks/events.js";
import { CoalescedPoll } from "../coalesced-poll.js";

export interface JobRunnerOptions {
  db: Database;
  logger: Logger;
  ssrf: SsrfPolicy;
  metrics?: ManagerMetrics;
  /** Jobs run at once by this manager. */
  concurrency?: number;
  /** How often to look for pending jobs when not woken (ms). */
  pollIntervalMs?: number;
  /** Lease length (ms); renewed at a third of it while the job runs. */
  leaseMs?: number;
  statIntervalMs?: number;
  rpcTimeoutMs?: number;
  /** Deadline of each registry request while resolving image manifests (ms). */
  registryTimeoutMs?: number;
  /** Towards schedulers and peers; plaintext when not given. */
  credentials?: ClientCredentials;
  /** Secrets of the jobs this manager accepted (shared with its JobService). */
  secrets?: JobSecrets;
  /** Called after a job finished (its job.succeeded/job.failed event is queued), to wake the webhook dispatcher. */
  onFinished?: () => void;
}

export class JobRunner {
  readonly owner: string;
  private readonly secrets: JobSecrets;
  private readonly clients: ClientPool;
  private readonly deps: ExecutorDeps;
  private readonly running = new Set<Promise<void>>();
  /** The runs in progress here, by job id: aborted when their job is canceled. */
  private readonly runs = new Map<number, AbortController>();
  private timer: NodeJS.Timeout | undefined;
  private holdTimer: NodeJS.Timeout | undefined;
  private stopped = true;
  private readonly polls = new CoalescedPoll(
    () => this.poll(),
    (err: unknown) => this.opts.logger.error({ err }, "job poll failed"),
  );

  constructor(private readonly opts: JobRunnerOptions) {
    this.secrets = opts.secrets ?? new JobSecrets(undefined, opts.leaseMs);
    this.owner = this.secrets.owner;
    this.clients = new ClientPool(opts.credentials);
    this.deps = {
      db: opts.db,
      clients: this.clients,
      ssrf: opts.ssrf,
      images: new ImageResolver(opts.ssrf.agent(), opts.registryTimeoutMs),
      logger: opts.logger,
      statIntervalMs: opts.statIntervalMs ?? 1000,
      rpcTimeoutMs: opts.rpcTimeoutMs ?? 30_000,
    };
  }

  private get leaseMs() {
    return this.opts.leaseMs ?? this.secrets.leaseMs;
  }

  start(): void {
    this.stopped = false;
    this.polls.start();
    this.timer = setInterval(() => this.wake(), this.opts.pollIntervalMs ?? 2000);
    this.timer.unref();
    // Jobs whose secrets only this manager holds stay leased to it until it runs them; the
    // secrets of a job that is no longer ours (deleted, or taken over after a stall) are dropped.
    this.holdTimer = setInterval(() => {
      const waiting = this.secrets.waiting();
      if (waiting.length === 0) return;
      this.opts.db
        .query<{ id: number }>(
          "UPDATE jobs SET lease_until = now() + make_interval(secs => $1::double precision) WHERE lease_owner = $2 AND state = 'PENDING' AND id = ANY(string_to_array($3, ',')::int[]) RETURNING id",
          [this.leaseMs / 1000, this.owner, waiting.join(",")],
        )
        .then((rows) => {
          const ours = new Set(rows.map((r) => r.id));
          for (const id of waiting) if (!ours.has(id)) this.secrets.drop(id);
        })
        .catch((err: unknown) => this.opts.logger.warn({ err }, "lease renewal of held jobs failed"));
    }, this.leaseMs / 3);
    this.holdTimer.unref();
    this.wake();
  }

  /** Looks for pending jobs now (called when a job is created). */
  wake(): void {
    this.polls.wake();
  }

  private async poll(): Promise<void> {
    const limit = this.opts.concurrency ?? 4;
    while (!this.stopped && this.running.size < limit) {
      const job = await this.claim();
      if (!job) return;
      const p = this.run(job).finally(() => {
        this.running.delete(p);
        this.wake();
      });
      this.running.add(p);
    }
  }

  private async claim(): Promise<JobRow | undefined> {
    const [job] = await this.opts.db.query<JobRow>(
      `UPDATE jobs SET lease_owner = $1, lease_until = now() + make_interval(secs => $2::double precision), attempts = attempts + 1
       WHERE id = (SELECT id FROM jobs WHERE state = 'PENDING' AND (lease_until IS NULL OR lease_until < now() OR (lease_owner = $1 AND id = ANY(string_to_array($3, ',')::int[])))
                   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      // Besides free jobs: those leased to this manager at creation, not started yet.
      [this.owner, this.leaseMs / 1000, this.secrets.waiting().join(",")],
    );
    return job;
  }

  /** Stops this manager's run of a job that was canceled (nothing when it runs elsewhere or not at all). */
  cancel(jobId: number): void {
    this.runs.get(jobId)?.abort(new Error("job canceled"));
  }

  private async run(job: JobRow): Promise<void> {
    const log = this.opts.logger.child({ job: job.id, type: job.type });
    const abort = new AbortController();
    this.runs.set(job.id, abort);
    const deps: ExecutorDeps = { ...this.deps, signal: abort.signal };
    const renew = setInterval(() => {
      this.opts.db
        .query("UPDATE jobs SET lease_until = now() + make_interval(secs => $1::double precision) WHERE id = $2 AND lease_owner = $3 AND state = 'PENDING' RETURNING id", [this.leaseMs / 1000, job.id, this.owner])
        .then((rows) => {
          // Canceled (or, after a stall, taken over by another manager): this run is no longer the job's.
          if (rows.length === 0) abort.abort(new Error("job canceled or taken over by another manager"));
        })
        .catch((err: unknown) => log.warn({ err }, "lease renewal failed"));
    }, this.leaseMs / 3);
    renew.unref();
    try {
      const clusters = await jobClusterIds(this.opts.db, job.id);
      const secrets = this.secrets.take(job.id);
      if (job.type === "preheat" && needsPreheatSecrets(job.args) && !secrets) {
        const error = `the job's ${heldCredentials(job.args)} credentials were kept only in the memory of the manager that accepted it, which stopped before running it; create the job again`;
        await this.finish(job, "FAILURE", { state: "FAILURE", group_uuid: job.task_id, job_states: [{ task_name: job.type, task_uuid: "", state: "FAILURE", error, results: [], created_at: new Date().toISOString(), ttl: 0 }] });
        log.warn("job failed: its credentials are gone");
        return;
      }
      const states: JobState[] = await Promise.all(clusters.map((clusterId) => this.runOne(deps, job, clusterId, secrets)));
      if (abort.signal.aborted) {
        log.info({ reason: errorMessage(abort.signal.reason) }, "job run stopped");
        return;
      }
      const ok = states.length > 0 && states.every((s) => s.state === "SUCCESS");
      const result = {
        created_at: job.created_at.toISOString(),
        updated_at: new Date().toISOString(),
        group_uuid: job.task_id,
        state: ok ? "SUCCESS" : "FAILURE",
        job_states: states.length > 0 ? states : [{ task_name: job.type, task_uuid: "", state: "FAILURE", error: "no scheduler cluster to run the job on", results: [], created_at: new Date().toISOString(), ttl: 0 }],
      };
      await this.finish(job, result.state, result);
      log.info({ state: result.state, clusters: states.length }, "job finished");
    } catch (err) {
      log.error({ err }, "job failed unexpectedly");
      await this.finish(job, "FAILURE", { state: "FAILURE", group_uuid: job.task_id, job_states: [{ task_name: job.type, task_uuid: "", state: "FAILURE", error: errorMessage(err), results: [], created_at: new Date().toISOString(), ttl: 0 }] }).catch(() => undefined);
    } finally {
      clearInterval(renew);
      this.runs.delete(job.id);
      this.secrets.drop(job.id);
    }
  }

  private runOne(deps: ExecutorDeps, job: JobRow, clusterId: number, secrets: PreheatSecrets | undefined): Promise<JobState> {
    // A row written by another version may hold a type this one does not know.
    const type: string = job.type;
    switch (job.type) {
      case "preheat":
        return runPreheat(deps, clusterId, job.args, secrets);
      case "get_task":
        return runGetTask(deps, clusterId, job.args);
      case "delete_task":
        return runDeleteTask(deps, clusterId, job.args);
      case "sync_peers":
        return runSyncPeers(deps, clusterId);
      default:
        return Promise.resolve({ task_name: type, task_uuid: "", state: "FAILURE", error: `unknown job type "${type}"`, results: [], created_at: new Date().toISOString(), ttl: 0 });
    }
  }

  private async finish(job: JobRow, finalState: string, result: unknown): Promise<void> {
    // Only the lease holder writes the outcome: a manager that lost its lease must not
    // overwrite the result of the one that took over. The webhook event is written with it, so
    // there is one per finished job.
    const finished = await this.opts.db.transaction(async (tx) => {
      const [row] = await tx.query<JobRow>(
        "UPDATE jobs SET state = $1, result = $2::jsonb, args = $3::jsonb, lease_owner = NULL, lease_until = NULL, updated_at = now() WHERE id = $4 AND lease_owner = $5 RETURNING *",
        [finalState, JSON.stringify(result), JSON.stringify(scrubArgs(job.args)), job.id, this.owner],
      );
      return row ? (await enqueueJobEvent(tx, finalState === "SUCCESS" ? "job.succeeded" : "job.failed", row)) > 0 : false;
    });
    this.opts.metrics?.jobs.inc({ type: job.type, state: finalState });
    if (finished) this.opts.onFinished?.();
  }

  /** Stops claiming, waits for running jobs, closes clients. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.holdTimer) clearInterval(this.holdTimer);
    // A claim in progress adds its job to `running` before the poll ends.
    await this.polls.stop();
    await Promise.allSettled([...this.running]);
    this.clients.close();
  }
}
