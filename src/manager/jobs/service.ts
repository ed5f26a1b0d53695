// Creating and reading jobs: validation per job type, cluster selection with tenancy, the
// per-cluster rate limit, and the JSON shape Dragonfly (and Harbor) read back.
import { randomUUID } from "node:crypto";
import type { Static } from "@sinclair/typebox";
import type { Database, Queryable } from "../db/database.js";
import type { JobRow, JobSchedulerClusterRow, SchedulerClusterRow } from "../db/rows.js";
import type * as S from "../schemas.js";
import type { Principal } from "../auth/principal.js";
import { assertTenant } from "../auth/principal.js";
import { badRequest, conflict, forbidden, HttpError, notFound } from "../errors.js";
import { parsePreheatArgs, parseTaskArgs, redactArgs, scrubArgs } from "./args.js";
import { heldCredentials, needsPreheatSecrets, splitPreheatSecrets, type PreheatSecrets } from "./source-args.js";
import { JobSecrets } from "./secrets.js";
import { DEFAULT_JOB_RATE_LIMIT, type JobRateLimiter } from "./rate-limiter.js";
import { enqueueJobEvent } from "../webhooks/events.js";

export type CreateJobBody = Static<typeof S.CreateJob>;
export type JobType = CreateJobBody["type"];

/** A job as the API returns it: args redacted, with the clusters it runs on. */
export type JobView = Omit<JobRow, "args"> & { is_del: number; args: Record<string, unknown>; scheduler_clusters: Array<Pick<SchedulerClusterRow, "id" | "name">>; seed_peer_clusters: never[] };

/** The scheduler clusters a job runs on, by id. */
export async function jobClusterIds(q: Queryable, jobId: number): Promise<number[]> {
  const rows = await q.query<Pick<JobSchedulerClusterRow, "scheduler_cluster_id">>("SELECT scheduler_cluster_id FROM job_scheduler_clusters WHERE job_id = $1 ORDER BY 1", [jobId]);
  return rows.map((r) => r.scheduler_cluster_id);
}

export class JobService {
  constructor(
    private readonly db: Database,
    private readonly limiter: JobRateLimiter,
    /** Wakes the runner so a new job starts without waiting for the next poll. */
    private readonly notify: () => void = () => undefined,
    /** Where a job's secrets (object storage, HDFS, hub tokens) wait for dispatch (shared with this manager's runner). */
    private readonly secrets: JobSecrets = new JobSecrets(),
    /** Stops this manager's run of a canceled job at once (a run on another manager notices at its next lease renewal). */
    private readonly onCanceled: (id: number) => void = () => undefined,
  ) {}

  /** The args to store, and the secrets split off them (kept in memory only). */
  private normaliseArgs(type: JobType, args: unknown): { stored: JobRow["args"]; secrets?: PreheatSecrets } {
    switch (type) {
      case "preheat": {
        const { stored, secrets } = splitPreheatSecrets(parsePreheatArgs(args));
        return { stored: { ...stored }, ...(Object.keys(secrets).length > 0 ? { secrets } : {}) };
      }
      case "get_task":
      case "delete_task":
        return { stored: { ...parseTaskArgs(args) } };
      case "sync_peers":
        return { stored: {} };
    }
  }

  private async targetClusters(p: Principal, type: JobType, ids: number[] | null | undefined): Promise<Array<{ id: number; rate: number }>> {
    if (ids && ids.length > 0) {
      const out: Array<{ id: number; rate: number }> = [];
      for (const [i, id] of [...new Set(ids)].entries()) {
        const [row] = await this.db.query<Pick<SchedulerClusterRow, "tenant_id" | "config">>("SELECT tenant_id, config FROM scheduler_clusters WHERE id = $1", [id]);
        if (!row) throw badRequest(`body.scheduler_cluster_ids.${i}`, `scheduler cluster ${id} does not exist`);
        if (!p.isRoot && row.tenant_id !== p.tenantId) throw forbidden(`scheduler cluster ${id} belongs to another tenant`);
        out.push({ id, rate: row.config.job_rate_limit ?? DEFAULT_JOB_RATE_LIMIT });
      }
      return out;
    }
    // No clusters named (Harbor sends null): as Dragonfly, the clusters that can run the job —
    // those with an active scheduler (advertising "preheat" for preheats). When none can, the
    // job still targets every visible cluster and fails there with a clear reason.
    const feature = type === "preheat" ? ' AND s.features @> \'["preheat"]\'::jsonb' : "";
    const tenant = p.isRoot ? "" : " WHERE sc.tenant_id = $1";
    const params = p.isRoot ? [] : [p.tenantId];
    const all = await this.db.query<Pick<SchedulerClusterRow, "id" | "config"> & { ready: boolean }>(
      `SELECT sc.id, sc.config, EXISTS (SELECT 1 FROM schedulers s WHERE s.scheduler_cluster_id = sc.id AND s.state = 'active'${feature}) AS ready
       FROM scheduler_clusters sc${tenant} ORDER BY sc.id`,
      params,
    );
    const ready = all.filter((r) => r.ready);
    return (ready.length > 0 ? ready : all).map((r) => ({ id: r.id, rate: r.config.job_rate_limit ?? DEFAULT_JOB_RATE_LIMIT }));
  }

  async create(p: Principal, body: CreateJobBody): Promise<JobView> {
    const { stored: args, secrets } = this.normaliseArgs(body.type, body.args);
    const clusters = await this.targetClusters(p, body.type, body.scheduler_cluster_ids);
    return this.insert(p, { type: body.type, bio: body.bio ?? "", args, retryOf: null }, clusters, secrets);
  }

  private async insert(p: Principal, job: { type: string; bio: string; args: object; retryOf: number | null }, clusters: Array<{ id: number; rate: number }>, secrets?: PreheatSecrets): Promise<JobView> {
    const limited = this.limiter.take(clusters);
    if (limited !== undefined) throw new HttpError(429, `job rate limit exceeded for scheduler cluster ${limited}`);
    const id = await this.db.transaction(async (tx) => {
      // A job whose secrets only this manager holds is leased to it from the start (secrets.ts).
      const [row] = await tx.query<JobRow>(
        `INSERT INTO jobs (tenant_id, user_id, task_id, bio, type, args, lease_owner, lease_until, retry_of)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, now() + make_interval(secs => $8::double precision), $9) RETURNING *`,
        // Without secrets both are NULL (make_interval of NULL is NULL): a free job.
        [p.tenantId, p.userId, `group_${randomUUID()}`, job.bio, job.type, JSON.stringify(job.args), secrets ? this.secrets.owner : null, secrets ? this.secrets.leaseMs / 1000 : null, job.retryOf],
      );
      if (!row) throw new Error("job insert returned nothing");
      for (const c of clusters) await tx.query("INSERT INTO job_scheduler_clusters (job_id, scheduler_cluster_id) VALUES ($1, $2)", [row.id, c.id]);
      await enqueueJobEvent(tx, "job.created", row);
      return row.id;
    });
    if (secrets) this.secrets.hold(id, secrets);
    this.notify();
    return this.load(this.db, id);
  }

  /**
   * Cancels a PENDING job (waiting or running): it ends FAILURE — the terminal state Dragonfly's
   * and Harbor's clients know — with `result.canceled` and one job state per cluster saying who
   * canceled it, and job.failed is queued with it. The runner holding it loses its lease here, so
   * its outcome is never written, and it starts no further work for the job (runner.ts). A job
   * that already ended is left as it is: 409.
   */
  async cancel(p: Principal, id: number): Promise<JobView> {
    const canceled = await this.db.transaction(async (tx) => {
      const [row] = await tx.query<JobRow>("SELECT * FROM jobs WHERE id = $1 FOR UPDATE", [id]);
      if (!row) throw notFound("job");
      assertTenant(p, row.tenant_id);
      if (row.state !== "PENDING") throw conflict(`job ${id} is ${row.state}: only a PENDING job can be canceled`);
      const clusters = await jobClusterIds(tx, id);
      const now = new Date().toISOString();
      const error = `job canceled by ${p.userName}`;
      const result = {
        created_at: row.created_at.toISOString(),
        updated_at: now,
        group_uuid: row.task_id,
        state: "FAILURE",
        canceled: true,
        job_states: (clusters.length > 0 ? clusters : [undefined]).map((clusterId) => ({
          task_name: row.type,
          task_uuid: "",
          state: "FAILURE",
          error,
          // The shape of a preheat's results, which Harbor reads: nothing succeeded, nothing is left to fail.
          results: clusterId === undefined ? [] : [{ success_tasks: [], failure_tasks: [], scheduler_cluster_id: clusterId }],
          created_at: now,
          ttl: 0,
        })),
      };
      const [done] = await tx.query<JobRow>(
        "UPDATE jobs SET state = 'FAILURE', result = $1::jsonb, args = $2::jsonb, lease_owner = NULL, lease_until = NULL, updated_at = now() WHERE id = $3 RETURNING *",
        [JSON.stringify(result), JSON.stringify(scrubArgs(row.args)), id],
      );
      if (!done) throw notFound("job");
      await enqueueJobEvent(tx, "job.failed", done);
      return done;
    });
    this.secrets.drop(id);
    this.onCanceled(id);
    // Wakes the webhook dispatcher for job.failed.
    this.notify();
    return this.view(this.db, canceled);
  }

  /**
   * Retries a FAILURE job (canceled ones included) as a new job with the same type, args, bio and
   * scheduler clusters, `retry_of` naming the old one, created by the caller and rate limited as
   * any new job. The old job stays as it ended. Credentials were dropped from the old job's args
   * when it ended (or never stored), so a job that needed them cannot be retried: 409.
   */
  async retry(p: Principal, id: number): Promise<JobView> {
    const [old] = await this.db.query<JobRow>("SELECT * FROM jobs WHERE id = $1", [id]);
    if (!old) throw notFound("job");
    assertTenant(p, old.tenant_id);
    if (old.state !== "FAILURE") throw conflict(`job ${id} is ${old.state}: only a FAILURE job can be retried`);
    if (old.type === "preheat") {
      const gone = [needsPreheatSecrets(old.args) ? heldCredentials(old.args) : "", old.args.username && !old.args.password ? "registry" : ""].filter(Boolean);
      if (gone.length > 0) throw conflict(`job ${id} needs its ${gone.join(" and ")} credentials, which were dropped when it ended; create the job again with them`);
    }
    const ids = await jobClusterIds(this.db, id);
    // Its clusters, checked again (one may be gone, or the caller may not see it); none left: as a new job, the clusters that can run it.
    const clusters = await this.targetClusters(p, old.type, ids);
    return this.insert(p, { type: old.type, bio: old.bio, args: old.args, retryOf: id }, clusters);
  }

  async load(q: Queryable, id: number): Promise<JobView> {
    const [row] = await q.query<JobRow>("SELECT * FROM jobs WHERE id = $1", [id]);
    if (!row) throw notFound("job");
    return this.view(q, row);
  }

  /** Adds cluster references; hides credentials in args. */
  async decorate(q: Queryable, rows: JobRow[]): Promise<JobView[]> {
    const out: JobView[] = [];
    for (const row of rows) out.push(await this.view(q, row));
    return out;
  }

  private async view(q: Queryable, row: JobRow): Promise<JobView> {
    const clusters = await q.query<Pick<SchedulerClusterRow, "id" | "name">>(
      "SELECT sc.id, sc.name FROM job_scheduler_clusters j JOIN scheduler_clusters sc ON sc.id = j.scheduler_cluster_id WHERE j.job_id = $1 ORDER BY sc.id",
      [row.id],
    );
    return { ...row, is_del: 0, args: redactArgs(row.args), scheduler_clusters: clusters, seed_peer_clusters: [] };
  }
}
