// The events webhooks subscribe to, and writing them to the outbox. The manager sees tasks only
// through jobs (preheat, get_task, delete_task, sync_peers: schedulers and peers report no task
// events to it), so the events are a job's: created, succeeded, failed — of every job type, with
// the job's redacted args (the preheated URL or task id) and its per-cluster results. A canceled
// job is failed (its result says `canceled`); a retry is a created job whose `retry_of` names the old one.
//
// `enqueueJobEvent` is called with the transaction that creates or finishes the job: the event
// exists exactly when the change does, and a crash between the two cannot lose or invent one.
import type { Queryable } from "../db/database.js";
import type { JobRow, WebhookRow } from "../db/rows.js";
import { redactArgs } from "../jobs/args.js";

export const WEBHOOK_EVENTS = ["job.created", "job.succeeded", "job.failed"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** What an event tells of a job: a jobs row (user_id, args and result default to none). */
export type JobEventSource = Pick<JobRow, "id" | "type" | "state" | "task_id" | "bio" | "tenant_id" | "created_at" | "updated_at"> & Partial<Pick<JobRow, "user_id" | "args" | "result" | "retry_of">>;

/** The JSON body receivers get for a job event. */
export function jobEventBody(event: WebhookEvent, job: JobEventSource, schedulerClusterIds: number[], occurredAt = new Date()): string {
  return JSON.stringify({
    event,
    occurred_at: occurredAt.toISOString(),
    job: {
      id: job.id,
      type: job.type,
      state: job.state,
      task_id: job.task_id,
      bio: job.bio,
      tenant_id: job.tenant_id,
      user_id: job.user_id ?? null,
      retry_of: job.retry_of ?? null,
      args: redactArgs(job.args ?? {}),
      result: job.result ?? {},
      scheduler_cluster_ids: schedulerClusterIds,
      created_at: job.created_at.toISOString(),
      updated_at: job.updated_at.toISOString(),
    },
  });
}

/**
 * Writes one delivery per active webhook of the job's tenant subscribed to `event`; returns how
 * many. Nothing is sent here: the dispatcher picks the rows up.
 */
export async function enqueueJobEvent(q: Queryable, event: WebhookEvent, job: JobEventSource): Promise<number> {
  const subscribed = await q.query<Pick<WebhookRow, "id">>("SELECT id FROM webhooks WHERE active AND tenant_id = $1 AND event_types @> $2::jsonb", [job.tenant_id, JSON.stringify([event])]);
  if (subscribed.length === 0) return 0;
  const clusters = await q.query<{ id: number }>("SELECT scheduler_cluster_id AS id FROM job_scheduler_clusters WHERE job_id = $1 ORDER BY 1", [job.id]);
  const body = jobEventBody(event, job, clusters.map((c) => c.id));
  const rows = await q.query("INSERT INTO webhook_deliveries (webhook_id, event, body) SELECT id, $1, $2 FROM webhooks WHERE id = ANY(string_to_array($3, ',')::int[]) RETURNING id", [
    event,
    body,
    subscribed.map((w) => w.id).join(","),
  ]);
  return rows.length;
}
