// GetTenantKey's lookup of a peer the manager has no record of yet (issue 21). A peer enters
// `peers` through sync_peers (every job.syncPeers.interval, 24 h by default) or the REST API, so
// a node that joined the cluster since the last sync would be refused its tenant's key, and its
// sealed downloads would fail, for up to a day. Instead the manager asks the schedulers of its
// clusters, as sync_peers does, whether they know a host of that name, and records the rows it
// finds the way sync_peers records them (recordPeers): the caller's record is then what the next
// sync would have made it. Only the scheduler's word counts, never the caller's.
//
// Bounded, since any peer certificate of the cluster CA reaches this: one lookup per host name per
// `retryMs` (a name no scheduler knew is not asked about again until then), and concurrent calls
// for one name share one lookup. Names are those of certificates the CA issued, so the map of
// recent lookups stays as small as the set of hosts; entries past `retryMs` are dropped.
import type { Logger } from "../common/logger.js";
import { errorMessage } from "../common/errors.js";
import type { Database } from "./db/database.js";
import { activeSchedulers, mapLimit, type ClientPool } from "./jobs/clients.js";
import { listHosts, recordPeers } from "./jobs/executors.js";

export interface PeerLookupOptions {
  db: Database;
  clients: ClientPool;
  logger: Logger;
  /** How long a name that was looked up is not looked up again (ms). */
  retryMs?: number;
  /** Deadline of each scheduler's ListHosts (ms): the daemon waits for its key meanwhile. */
  rpcTimeoutMs?: number;
}

/** Schedulers asked at once. */
const FAN_OUT = 8;

export class PeerLookup {
  private readonly retryMs: number;
  private readonly rpcTimeoutMs: number;
  /** When each name was last looked up (ms since the epoch). */
  private readonly lookedUp = new Map<string, number>();
  private readonly inFlight = new Map<string, Promise<boolean>>();

  constructor(private readonly opts: PeerLookupOptions) {
    this.retryMs = opts.retryMs ?? 30_000;
    this.rpcTimeoutMs = opts.rpcTimeoutMs ?? 5_000;
  }

  /**
   * Asks the schedulers about host `name` and records it in the clusters whose scheduler lists
   * it. true when it recorded a row; false when no scheduler knows the host, or the name was
   * looked up less than `retryMs` ago.
   */
  find(name: string): Promise<boolean> {
    const running = this.inFlight.get(name);
    if (running) return running;
    const now = Date.now();
    const last = this.lookedUp.get(name);
    if (last !== undefined && now - last < this.retryMs) return Promise.resolve(false);
    this.forgetExpired(now);
    this.lookedUp.set(name, now);
    const p = this.lookUp(name).finally(() => this.inFlight.delete(name));
    this.inFlight.set(name, p);
    return p;
  }

  private forgetExpired(now: number): void {
    for (const [name, at] of this.lookedUp) if (now - at >= this.retryMs) this.lookedUp.delete(name);
  }

  private async lookUp(name: string): Promise<boolean> {
    const { db, clients, logger } = this.opts;
    const schedulers = await activeSchedulers(db);
    const found = await mapLimit(schedulers, FAN_OUT, async (s) => {
      try {
        const hosts = (await listHosts({ clients, rpcTimeoutMs: this.rpcTimeoutMs }, s)).filter((h) => h.hostname === name);
        if (hosts.length > 0) await db.transaction((tx) => recordPeers(tx, s.scheduler_cluster_id, hosts));
        return hosts.length > 0 ? [s.scheduler_cluster_id] : [];
      } catch (e) {
        // One unreachable scheduler does not hide the host from the others.
        logger.warn({ scheduler: s.host_name, schedulerClusterId: s.scheduler_cluster_id, host: name, err: errorMessage(e) }, "looking up a peer on a scheduler failed");
        return [];
      }
    });
    const clusters = found.flat();
    if (clusters.length > 0) logger.info({ host: name, schedulerClusters: clusters }, "peer recorded from its schedulers on its first GetTenantKey");
    return clusters.length > 0;
  }
}
