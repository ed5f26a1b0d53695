// gRPC clients the job runner uses: the scheduler chosen for a cluster, and peers' upload
// services (for get_task/delete_task). Calls are promisified with a deadline.
import { credentials, Metadata, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import type { Database } from "../db/database.js";
import type { SchedulerRow } from "../db/rows.js";
import { DfdaemonUploadClient } from "../../gen/dfdaemon/v2/dfdaemon.js";
import { SchedulerClient } from "../../gen/scheduler/v2/scheduler.js";

/** The columns of a scheduler a job needs to call it. */
export type ActiveScheduler = Pick<SchedulerRow, "id" | "host_name" | "ip" | "port" | "scheduler_cluster_id">;

/** The first active scheduler of a cluster that advertises `feature` (Dragonfly's choice). */
export async function activeScheduler(db: Database, clusterId: number, feature: "preheat" | "schedule" | undefined): Promise<ActiveScheduler | undefined> {
  const [row] = await db.query<ActiveScheduler>(
    `SELECT id, host_name, ip, port, scheduler_cluster_id FROM schedulers
     WHERE scheduler_cluster_id = $1 AND state = 'active' ${feature ? "AND features @> $2::jsonb" : ""} ORDER BY id LIMIT 1`,
    feature ? [clusterId, JSON.stringify([feature])] : [clusterId],
  );
  return row;
}

/** The scheduler activeScheduler picks for each cluster that has one (no feature asked). */
export function activeSchedulers(db: Database): Promise<ActiveScheduler[]> {
  return db.query<ActiveScheduler>(
    "SELECT DISTINCT ON (scheduler_cluster_id) id, host_name, ip, port, scheduler_cluster_id FROM schedulers WHERE state = 'active' ORDER BY scheduler_cluster_id, id",
  );
}

type Callback<Res> = (err: ServiceError | null, res: Res) => void;

/**
 * Calls a unary method with a deadline (ms from now): `call((md, o, cb) => c.statFile(req, md, o, cb), 5000)`.
 * With `signal` (a canceled job's), no call is started once it is aborted, and one in flight is
 * cancelled: both reject with the signal's reason.
 */
export function call<Res>(invoke: (md: Metadata, opts: { deadline: number }, cb: Callback<Res>) => unknown, timeoutMs: number, signal?: AbortSignal): Promise<Res> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const stop = () => reject(signal?.reason as Error);
    const pending = invoke(new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      signal?.removeEventListener("abort", onAbort);
      if (err) reject(err);
      else resolve(res);
    }) as { cancel?: () => void } | undefined;
    function onAbort() {
      pending?.cancel?.();
      stop();
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

const addr = (ip: string, port: number) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);

export interface ClientCredentials {
  scheduler: ChannelCredentials;
  daemon: ChannelCredentials;
}

/** Client pools keyed by address, closed together. */
export class ClientPool {
  private readonly schedulers = new Map<string, InstanceType<typeof SchedulerClient>>();
  private readonly daemons = new Map<string, InstanceType<typeof DfdaemonUploadClient>>();

  constructor(private readonly creds: ClientCredentials = { scheduler: credentials.createInsecure(), daemon: credentials.createInsecure() }) {}

  scheduler(ip: string, port: number): InstanceType<typeof SchedulerClient> {
    const a = addr(ip, port);
    let c = this.schedulers.get(a);
    if (!c) {
      c = new SchedulerClient(a, this.creds.scheduler);
      this.schedulers.set(a, c);
    }
    return c;
  }

  daemon(ip: string, port: number): InstanceType<typeof DfdaemonUploadClient> {
    const a = addr(ip, port);
    let c = this.daemons.get(a);
    if (!c) {
      c = new DfdaemonUploadClient(a, this.creds.daemon);
      this.daemons.set(a, c);
    }
    return c;
  }

  close(): void {
    for (const c of [...this.schedulers.values(), ...this.daemons.values()]) c.close();
    this.schedulers.clear();
    this.daemons.clear();
  }
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  });
  await Promise.all(workers);
  return out;
}
