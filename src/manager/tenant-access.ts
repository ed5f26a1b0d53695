// Which tenants' keys a daemon may have (issue 21): those of the clusters the manager has the
// daemon on record in, never what the daemon says about itself. The caller is the host its
// certificate names (the CA's word: damselfly://peer/<hostname>); the manager's record of that
// host is
//   - a peer: its rows in `peers` (sync_peers copies the schedulers' host lists there, and an
//     operator may add one with POST /api/v1/peers): the tenants of those scheduler clusters.
//     A peer without rows is looked up on its schedulers first (peer-lookup.ts), so a node that
//     joined since the last sync is recorded as the sync would record it;
//   - a seed peer: its rows in `seed_peers` (UpdateSeedPeer, or the REST API): the tenant of
//     its seed-peer cluster and the tenants of the scheduler clusters that cluster serves, whose
//     back-to-source downloads it makes and stores.
// What a multi-tenant operator (Harbor projects mapped to tenants, one or more scheduler clusters
// per tenant) expects: a host of tenant A's clusters never reads tenant B's sealed tasks, even
// with a valid certificate of the shared cluster CA and whatever application or cluster id it
// names. An application grants nothing by itself: it only says which tenant a task belongs to,
// and that tenant must be one of the caller's. A host the manager has no record of (and, for a
// peer, that no scheduler of the manager's clusters lists) gets no key.
// Revoking a host's access is deleting its record (DELETE /api/v1/peers/{id} or seed-peers);
// a record's state (active or not) does not matter, so a restarting host still opens its cache.
import type { Identity } from "../common/tls/identity.js";
import type { Database } from "./db/database.js";
import type { PeerRow, SchedulerClusterRow } from "./db/rows.js";
import type { PeerLookup } from "./peer-lookup.js";

/** What the manager has on record for a caller: the clusters it is in and their tenants. */
export interface CallerRecord {
  /** "peer host-a (scheduler clusters 2, 3)": for messages and logs. */
  readonly description: string;
  /** Tenants whose keys the caller may have. */
  readonly tenants: ReadonlySet<number>;
  /** Scheduler clusters the caller is in (a seed peer: those its cluster serves), by id, with their tenant. */
  readonly schedulerClusters: ReadonlyMap<number, number>;
}

type ClusterTenant = { cluster_id: PeerRow["scheduler_cluster_id"]; tenant_id: SchedulerClusterRow["tenant_id"] };

export class TenantAccess {
  constructor(
    private readonly db: Database,
    private readonly lookup?: PeerLookup,
  ) {}

  private async peerRecord(name: string): Promise<CallerRecord | undefined> {
    const rows = await this.db.query<ClusterTenant>(
      "SELECT DISTINCT p.scheduler_cluster_id AS cluster_id, sc.tenant_id FROM peers p JOIN scheduler_clusters sc ON sc.id = p.scheduler_cluster_id WHERE p.host_name = $1 ORDER BY 1",
      [name],
    );
    if (rows.length === 0) return undefined;
    const clusters = new Map(rows.map((r) => [r.cluster_id, r.tenant_id]));
    return { description: `peer ${name} (scheduler cluster ${[...clusters.keys()].join(", ")})`, tenants: new Set(clusters.values()), schedulerClusters: clusters };
  }

  /** The caller's record; undefined when the manager knows no host of that name in that role. */
  async recordOf(id: Identity): Promise<CallerRecord | undefined> {
    if (id.role === "peer") {
      // A peer started since the last sync_peers: its schedulers' word, recorded now (peer-lookup.ts).
      return (await this.peerRecord(id.name)) ?? ((await this.lookup?.find(id.name)) ? await this.peerRecord(id.name) : undefined);
    }
    if (id.role === "seed-peer") {
      const own = await this.db.query<ClusterTenant>(
        "SELECT DISTINCT sp.seed_peer_cluster_id AS cluster_id, c.tenant_id FROM seed_peers sp JOIN seed_peer_clusters c ON c.id = sp.seed_peer_cluster_id WHERE sp.host_name = $1 ORDER BY 1",
        [id.name],
      );
      if (own.length === 0) return undefined;
      const served = await this.db.query<ClusterTenant>(
        `SELECT DISTINCT sc.id AS cluster_id, sc.tenant_id FROM seed_peers sp
           JOIN seed_peer_cluster_scheduler_clusters l ON l.seed_peer_cluster_id = sp.seed_peer_cluster_id
           JOIN scheduler_clusters sc ON sc.id = l.scheduler_cluster_id
         WHERE sp.host_name = $1 ORDER BY 1`,
        [id.name],
      );
      const clusters = new Map(served.map((r) => [r.cluster_id, r.tenant_id]));
      return {
        description: `seed peer ${id.name} (seed peer cluster ${own.map((r) => r.cluster_id).join(", ")})`,
        tenants: new Set([...own.map((r) => r.tenant_id), ...clusters.values()]),
        schedulerClusters: clusters,
      };
    }
    return undefined;
  }
}

/**
 * The tenant of the caller's own scheduler cluster, for a task of an application the manager
 * does not know. The request's cluster id is a choice among the clusters on record only, never a
 * claim to another one: a host in one cluster (or in several of one tenant) gets that tenant
 * whatever it names; a host in clusters of several tenants must name one of them
 * (host.schedulerClusterID). undefined when the record leaves it open.
 */
export function ownClusterTenant(record: CallerRecord, requested: number): number | undefined {
  const named = record.schedulerClusters.get(requested);
  if (named !== undefined) return named;
  const tenants = new Set(record.schedulerClusters.values());
  if (tenants.size === 1) return [...tenants][0];
  // A seed peer cluster that serves no scheduler cluster yet: its own tenant.
  return tenants.size === 0 && record.tenants.size === 1 ? [...record.tenants][0] : undefined;
}
