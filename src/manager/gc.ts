// Retention, as Dragonfly's manager GC: audits and finished jobs older than the TTLs in the
// `gc` config row (Go durations in ns: {"audit":{"ttl":…},"job":{"ttl":…}}) are deleted, and
// revoked session ids are forgotten once the token they revoke has expired anyway; finished
// webhook deliveries and finished commands to daemons (with their per-host results) go with
// the jobs (same TTL).
import type { Logger } from "../common/logger.js";
import { runEvery, type Periodic } from "../common/periodic.js";
import type { Database } from "./db/database.js";

const DEFAULT_AUDIT_TTL_NS = 7 * 24 * 3600 * 1e9;
const DEFAULT_JOB_TTL_NS = 6 * 3600 * 1e9;

export interface GcResult {
  audits: number;
  jobs: number;
  revokedTokens: number;
  webhookDeliveries: number;
  hostCommands: number;
}

export async function collectGarbage(db: Database): Promise<GcResult> {
  const [row] = await db.query<{ value: string }>("SELECT value FROM configs WHERE name = 'gc'");
  let auditTtl = DEFAULT_AUDIT_TTL_NS;
  let jobTtl = DEFAULT_JOB_TTL_NS;
  try {
    const v = JSON.parse(row?.value ?? "{}") as { audit?: { ttl?: unknown }; job?: { ttl?: unknown } };
    if (typeof v.audit?.ttl === "number" && v.audit.ttl > 0) auditTtl = v.audit.ttl;
    if (typeof v.job?.ttl === "number" && v.job.ttl > 0) jobTtl = v.job.ttl;
  } catch {
    // A malformed gc config keeps the defaults rather than deleting on a guess.
  }
  const audits = await db.query("DELETE FROM audits WHERE operated_at < now() - make_interval(secs => $1::double precision) RETURNING id", [auditTtl / 1e9]);
  const jobs = await db.query("DELETE FROM jobs WHERE state IN ('SUCCESS', 'FAILURE') AND updated_at < now() - make_interval(secs => $1::double precision) RETURNING id", [jobTtl / 1e9]);
  const revoked = await db.query("DELETE FROM revoked_tokens WHERE expires_at < now() RETURNING jti");
  // The webhook delivery log is kept as long as the jobs it reports on; pending ones are kept.
  const deliveries = await db.query("DELETE FROM webhook_deliveries WHERE state IN ('SUCCESS', 'FAILURE') AND updated_at < now() - make_interval(secs => $1::double precision) RETURNING id", [jobTtl / 1e9]);
  const commands = await db.query("DELETE FROM host_commands WHERE state IN ('SUCCESS', 'FAILURE') AND updated_at < now() - make_interval(secs => $1::double precision) RETURNING id", [jobTtl / 1e9]);
  return { audits: audits.length, jobs: jobs.length, revokedTokens: revoked.length, webhookDeliveries: deliveries.length, hostCommands: commands.length };
}

export function startGc(db: Database, logger: Logger, everyMs = 3_600_000): Periodic {
  return runEvery(
    everyMs,
    () => collectGarbage(db).then((r) => {
      if (r.audits + r.jobs + r.revokedTokens + r.webhookDeliveries + r.hostCommands > 0) logger.info(r, "garbage collected");
    }),
    (err: unknown) => logger.warn({ err }, "gc failed"),
  );
}
