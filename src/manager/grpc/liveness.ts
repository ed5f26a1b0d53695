// Schedulers and seed peers keep themselves "active" with a KeepAlive stream. When the stream
// ends they go inactive at once; when it stays open but goes silent, this sweep marks them
// inactive after three missed intervals (the interval each scheduler reported in its config,
// `manager_keep_alive_interval` in Go nanoseconds; 5 s when absent).
import type { Logger } from "../../common/logger.js";
import { runEvery, type Periodic } from "../../common/periodic.js";
import type { Database } from "../db/database.js";

export const DEFAULT_KEEPALIVE_INTERVAL_MS = 5000;
export const MISSED_INTERVALS = 3;

export async function sweepInactive(db: Database): Promise<{ schedulers: number; seedPeers: number }> {
  const schedulers = await db.query(
    `UPDATE schedulers SET state = 'inactive', updated_at = now()
     WHERE state = 'active' AND (last_keep_alive_at IS NULL OR last_keep_alive_at < now() - make_interval(secs => $1 *
       COALESCE(NULLIF(config->>'manager_keep_alive_interval', '')::double precision / 1e9, $2::double precision)))
     RETURNING id`,
    [MISSED_INTERVALS, DEFAULT_KEEPALIVE_INTERVAL_MS / 1000],
  );
  const seedPeers = await db.query(
    `UPDATE seed_peers SET state = 'inactive', updated_at = now()
     WHERE state = 'active' AND (last_keep_alive_at IS NULL OR last_keep_alive_at < now() - make_interval(secs => $1 * $2::double precision)) RETURNING id`,
    [MISSED_INTERVALS, DEFAULT_KEEPALIVE_INTERVAL_MS / 1000],
  );
  return { schedulers: schedulers.length, seedPeers: seedPeers.length };
}

/** Runs the sweep every `everyMs` until stopped. */
export function startLivenessSweep(db: Database, logger: Logger, everyMs = 1000): Periodic {
  return runEvery(
    everyMs,
    () => sweepInactive(db).then((n) => {
      if (n.schedulers > 0 || n.seedPeers > 0) logger.info(n, "marked silent schedulers/seed peers inactive");
    }),
    (err: unknown) => logger.warn({ err }, "liveness sweep failed"),
  );
}
