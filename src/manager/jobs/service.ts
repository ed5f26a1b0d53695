// Creating and reading jobs: validation per job type, cluster selection with tenancy, the
// per-cluster rate limit, and the JSON shape Dragonfly (and Harbor) read back.
import { randomUUID } from "node:crypto";
import type { Static } from "@sinclair/typebox";
import type { Database, Queryable } from "../db/database.js";
import type { JobRow, SchedulerClusterRow } from "../db/rows.js";
import type * as S from "../schemas.js";
import type { Principal } from "../auth/principal.js";
import { badRequest, forbidden, HttpError, notFound } from "../errors.js";
import { parsePreheatArgs, parseTaskArgs, redactArgs } from "./args.js";
import { splitPreheatSecrets, type PreheatSecrets } from "./source-args.js";
import { JobSecrets } from "./secrets.js";
import { DEFAULT_JOB_RATE_LIMIT, type JobRateLimiter } from "./rate-limiter.js";
import { enqueueJobEvent } from "../webhooks/events.js";

export type CreateJobBody = Static<typeof S.CreateJob>;
export type JobType = CreateJobBody["type"];

/** A job as the API returns it: args redacted, with the clusters it runs on. */
export type JobView = Omit<JobRow, "args"> & { is_del: number; args: Record<string, unknown>; scheduler_clusters: Array<Pick<SchedulerClusterRow, "id" | "name">>; seed_peer_clusters: never[] };

export class JobService {
  constructor(
    private readonly db: Database,
    private readonly limiter: JobRateLimiter,
    /** Wakes the runner so a new job starts without waiting for the next poll. */
    private readonly notify: () => void = () => undefined,
    /** Where a job's secrets (object storage, HDFS, hub tokens) wait for dispatch (shared with this manager's runner). */
    private readonly secrets: JobSecrets = new JobSecrets(),
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
    const limited = this.limiter.take(clusters);
    if (limited !== undefined) throw new HttpError(429, `job rate limit exceeded for scheduler cluster ${limited}`);
    const id = await this.db.transaction(async (tx) => {
      // A job whose secrets only this manager holds is leased to it from the start (secrets.ts).
      const [row] = await tx.query<JobRow>(
        `INSERT INTO jobs (tenant_id, user_id, task_id, bio, type, args, lease_owner, lease_until)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, now() + make_interval(secs => $8::double precision)) RETURNING *`,
        // Without secrets both are NULL (make_interval of NULL is NULL): a free job.
        [p.tenantId, p.userId, `group_${randomUUID()}`, body.bio ?? "", body.type, JSON.stringify(args), secrets ? this.secrets.owner : null, secrets ? this.secrets.leaseMs / 1000 : null],
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
