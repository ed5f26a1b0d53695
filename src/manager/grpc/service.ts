// manager.v2.Manager over grpc-js: schedulers register (UpdateScheduler), stay alive
// (KeepAlive), read their cluster config (GetScheduler) and application priorities; daemons
// discover schedulers (ListSchedulers, with Dragonfly's cluster scoring); seed peers register.
import { isIP } from "node:net";
import { status, type sendUnaryData, type ServerReadableStream, type ServerUnaryCall } from "@grpc/grpc-js";
import type { Logger } from "../../common/logger.js";
import type { Database } from "../db/database.js";
import type { ApplicationRow, SchedulerClusterRow, SchedulerRow, SeedPeerClusterRow, SeedPeerRow } from "../db/rows.js";
import type { Empty } from "../../gen/google/protobuf/empty.js";
import {
  SourceType,
  type Application,
  type DeleteSeedPeerRequest,
  type GetSchedulerRequest,
  type GetSeedPeerRequest,
  type KeepAliveRequest,
  type ListApplicationsRequest,
  type ListApplicationsResponse,
  type ListSchedulersRequest,
  type ListSchedulersResponse,
  type ListSeedPeersRequest,
  type ListSeedPeersResponse,
  type ManagerServer,
  type Scheduler,
  type SeedPeer,
  type UpdateSchedulerRequest,
  type UpdateSeedPeerRequest,
} from "../../gen/manager/v2/manager.js";
import { Authorizer, type Denial } from "../../common/grpc/authz.js";
import type { ManagerMetrics } from "../metrics.js";
import { rankClusters } from "./searcher.js";
import { errorMessage } from "../../common/errors.js";

class RpcError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v ?? {}));

/** A seed peer joined with its cluster's columns as c_* (seedPeersFor, listSeedPeers). */
type SeedPeerWithCluster = SeedPeerRow & { c_id: number; c_name: string; c_bio: string; c_config: SeedPeerClusterRow["config"] };
const clusterOf = (r: SeedPeerWithCluster) => ({ id: r.c_id, name: r.c_name, bio: r.c_bio, config: r.c_config });

function requireHost(hostname: string, ip: string): void {
  if (!hostname) throw new RpcError(status.INVALID_ARGUMENT, "hostname is required");
  if (!isIP(ip)) throw new RpcError(status.INVALID_ARGUMENT, `invalid ip "${ip}"`);
}

/** `guard` answers PERMISSION_DENIED before `fn` runs when the caller's certificate may not. */
function unary<Req, Res>(log: Logger, name: string, fn: (req: Req) => Promise<Res>, guard?: (call: ServerUnaryCall<Req, Res>) => Denial | undefined) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const denied = guard?.(call);
    if (denied) return callback(denied);
    fn(call.request).then(
      (res) => callback(null, res),
      (err: unknown) => {
        if (err instanceof RpcError) return callback({ code: err.code, details: err.message });
        log.error({ err, method: name }, "manager rpc failed");
        callback({ code: status.INTERNAL, details: errorMessage(err) });
      },
    );
  };
}

export class ManagerGrpcService {
  constructor(
    private readonly db: Database,
    private readonly log: Logger,
    private readonly metrics?: ManagerMetrics,
    /** Who may register schedulers and seed peers; open unless the server runs mTLS. */
    private readonly authz: Authorizer = new Authorizer(false, log),
  ) {}

  private seedPeerMessage(row: SeedPeerRow, cluster?: Pick<SeedPeerClusterRow, "id" | "name" | "bio" | "config">): SeedPeer {
    return {
      id: row.id,
      hostname: row.host_name,
      type: row.type,
      idc: row.idc,
      location: row.location,
      ip: row.ip,
      port: row.port,
      downloadPort: row.download_port,
      state: row.state,
      seedPeerClusterId: row.seed_peer_cluster_id,
      ...(cluster ? { seedPeerCluster: { id: cluster.id, name: cluster.name, bio: cluster.bio, config: json(cluster.config) } } : {}),
      schedulers: [],
    };
  }

  /** Active seed peers serving a scheduler cluster, with their cluster. */
  private async seedPeersFor(schedulerClusterId: number): Promise<SeedPeer[]> {
    const rows = await this.db.query<SeedPeerWithCluster>(
      `SELECT sp.*, spc.id AS c_id, spc.name AS c_name, spc.bio AS c_bio, spc.config AS c_config
       FROM seed_peer_cluster_scheduler_clusters l
       JOIN seed_peer_clusters spc ON spc.id = l.seed_peer_cluster_id
       JOIN seed_peers sp ON sp.seed_peer_cluster_id = spc.id
       WHERE l.scheduler_cluster_id = $1 AND sp.state = 'active' ORDER BY sp.id`,
      [schedulerClusterId],
    );
    return rows.map((r) => this.seedPeerMessage(r, clusterOf(r)));
  }

  private schedulerMessage(row: SchedulerRow, cluster: SchedulerClusterRow | undefined, seedPeers: SeedPeer[]): Scheduler {
    return {
      id: row.id,
      hostname: row.host_name,
      idc: row.idc,
      location: row.location,
      ip: row.ip,
      port: row.port,
      state: row.state,
      schedulerClusterId: row.scheduler_cluster_id,
      ...(cluster
        ? {
            schedulerCluster: {
              id: cluster.id,
              name: cluster.name,
              bio: cluster.bio,
              config: json(cluster.config),
              clientConfig: json(cluster.client_config),
              scopes: json(cluster.scopes),
              seedClientConfig: json(cluster.seed_client_config),
            },
          }
        : {}),
      seedPeers,
      features: json(row.features),
    };
  }

  async updateScheduler(req: UpdateSchedulerRequest): Promise<Scheduler> {
    requireHost(req.hostname, req.ip);
    if (req.schedulerClusterId < 1) throw new RpcError(status.INVALID_ARGUMENT, "scheduler_cluster_id must be >= 1");
    if (req.port < 1 || req.port > 65535) throw new RpcError(status.INVALID_ARGUMENT, `invalid port ${req.port}`);
    let config: unknown = {};
    if (req.config.length > 0) {
      try {
        config = JSON.parse(req.config.toString("utf8"));
      } catch {
        throw new RpcError(status.INVALID_ARGUMENT, "config is not valid JSON");
      }
    }
    const [cluster] = await this.db.query<Pick<SchedulerClusterRow, "id">>("SELECT id FROM scheduler_clusters WHERE id = $1", [req.schedulerClusterId]);
    if (!cluster) throw new RpcError(status.NOT_FOUND, `scheduler cluster ${req.schedulerClusterId} not found`);
    const features = req.features.length > 0 ? req.features : ["schedule", "preheat"];
    const [row] = await this.db.query<SchedulerRow>(
      `INSERT INTO schedulers (host_name, ip, port, idc, location, features, config, scheduler_cluster_id, last_keep_alive_at)
       VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, now())
       ON CONFLICT (host_name, ip, scheduler_cluster_id) DO UPDATE SET port = EXCLUDED.port, idc = EXCLUDED.idc, location = EXCLUDED.location,
         features = EXCLUDED.features, config = EXCLUDED.config, last_keep_alive_at = now(), updated_at = now()
       RETURNING *`,
      [req.hostname, req.ip, req.port, req.idc ?? "", req.location ?? "", JSON.stringify(features), JSON.stringify(config), req.schedulerClusterId],
    );
    if (!row) throw new RpcError(status.INTERNAL, "scheduler upsert returned nothing");
    this.log.info({ hostname: req.hostname, ip: req.ip, cluster: req.schedulerClusterId }, "scheduler registered");
    return this.schedulerMessage(row, undefined, []);
  }

  async getScheduler(req: GetSchedulerRequest): Promise<Scheduler> {
    if (!req.hostname) throw new RpcError(status.INVALID_ARGUMENT, "hostname is required");
    const params: unknown[] = [req.hostname, req.schedulerClusterId];
    const ipClause = req.ip ? " AND ip = $3" : "";
    if (req.ip) params.push(req.ip);
    const [row] = await this.db.query<SchedulerRow>(`SELECT * FROM schedulers WHERE host_name = $1 AND scheduler_cluster_id = $2${ipClause} ORDER BY id LIMIT 1`, params);
    if (!row) throw new RpcError(status.NOT_FOUND, `scheduler ${req.hostname} in cluster ${req.schedulerClusterId} not found`);
    const [cluster] = await this.db.query<SchedulerClusterRow>("SELECT * FROM scheduler_clusters WHERE id = $1", [row.scheduler_cluster_id]);
    return this.schedulerMessage(row, cluster, await this.seedPeersFor(row.scheduler_cluster_id));
  }

  async listSchedulers(req: ListSchedulersRequest): Promise<ListSchedulersResponse> {
    requireHost(req.hostname, req.ip);
    if (req.schedulerClusterId !== 0) {
      // A pinned cluster gets all its schedulers in any state; the client health-checks them.
      const [cluster] = await this.db.query<SchedulerClusterRow>("SELECT * FROM scheduler_clusters WHERE id = $1", [req.schedulerClusterId]);
      if (!cluster) return { schedulers: [] };
      const rows = await this.db.query<SchedulerRow>("SELECT * FROM schedulers WHERE scheduler_cluster_id = $1 ORDER BY id", [req.schedulerClusterId]);
      const seeds = await this.seedPeersFor(req.schedulerClusterId);
      return { schedulers: rows.map((r) => this.schedulerMessage(r, cluster, seeds)) };
    }
    this.metrics?.searchSchedulerCluster.inc({ version: req.version, commit: req.commit });
    const clusters = await this.db.query<SchedulerClusterRow>("SELECT * FROM scheduler_clusters ORDER BY id");
    const active = await this.db.query<SchedulerRow>("SELECT * FROM schedulers WHERE state = 'active' AND features @> '[\"schedule\"]'::jsonb ORDER BY id");
    const byCluster = new Map<number, SchedulerRow[]>();
    for (const s of active) byCluster.set(s.scheduler_cluster_id, [...(byCluster.get(s.scheduler_cluster_id) ?? []), s]);
    const candidates = clusters.filter((c) => byCluster.has(c.id));
    if (candidates.length === 0) {
      this.metrics?.searchSchedulerClusterFailure.inc({ version: req.version, commit: req.commit });
      return { schedulers: [] };
    }
    const ranked = rankClusters(candidates, { ip: req.ip, hostname: req.hostname, idc: req.idc, location: req.location });
    const schedulers: Scheduler[] = [];
    for (const cluster of ranked) {
      const seeds = await this.seedPeersFor(cluster.id);
      for (const s of byCluster.get(cluster.id) ?? []) schedulers.push(this.schedulerMessage(s, cluster, seeds));
    }
    return { schedulers };
  }

  async listApplications(req: ListApplicationsRequest): Promise<ListApplicationsResponse> {
    // A known scheduler gets its tenant's applications; anyone else gets them all, as in Dragonfly.
    const [owner] = req.hostname
      ? await this.db.query<Pick<SchedulerClusterRow, "tenant_id">>(
          "SELECT sc.tenant_id FROM schedulers s JOIN scheduler_clusters sc ON sc.id = s.scheduler_cluster_id WHERE s.host_name = $1 AND s.ip = $2 LIMIT 1",
          [req.hostname, req.ip],
        )
      : [];
    const rows = owner
      ? await this.db.query<ApplicationRow>("SELECT * FROM applications WHERE tenant_id = $1 ORDER BY id", [owner.tenant_id])
      : await this.db.query<ApplicationRow>("SELECT * FROM applications ORDER BY id");
    const applications: Application[] = rows.map((r) => ({
      id: r.id,
      name: r.name,
      url: r.url,
      bio: r.bio,
      // Rows written around the API may lack what its schema requires.
      priority: { value: r.priority.value ?? 0, urls: (r.priority.urls ?? []).map((u) => ({ regex: u.regex, value: u.value })) },
    }));
    return { applications };
  }

  async getSeedPeer(req: GetSeedPeerRequest): Promise<SeedPeer> {
    if (!req.hostname) throw new RpcError(status.INVALID_ARGUMENT, "hostname is required");
    const [row] = await this.db.query<SeedPeerRow>("SELECT * FROM seed_peers WHERE host_name = $1 AND seed_peer_cluster_id = $2 ORDER BY id LIMIT 1", [req.hostname, req.seedPeerClusterId]);
    if (!row) throw new RpcError(status.NOT_FOUND, `seed peer ${req.hostname} in cluster ${req.seedPeerClusterId} not found`);
    const [cluster] = await this.db.query<SeedPeerClusterRow>("SELECT * FROM seed_peer_clusters WHERE id = $1", [row.seed_peer_cluster_id]);
    return this.seedPeerMessage(row, cluster);
  }

  async listSeedPeers(_req: ListSeedPeersRequest): Promise<ListSeedPeersResponse> {
    const rows = await this.db.query<SeedPeerWithCluster>(
      "SELECT sp.*, c.id AS c_id, c.name AS c_name, c.bio AS c_bio, c.config AS c_config FROM seed_peers sp JOIN seed_peer_clusters c ON c.id = sp.seed_peer_cluster_id WHERE sp.state = 'active' ORDER BY sp.id",
    );
    return { seedPeers: rows.map((r) => this.seedPeerMessage(r, clusterOf(r))) };
  }

  async updateSeedPeer(req: UpdateSeedPeerRequest): Promise<SeedPeer> {
    requireHost(req.hostname, req.ip);
    if (req.type !== "super") throw new RpcError(status.INVALID_ARGUMENT, `seed peer type must be "super", got "${req.type}"`);
    if (req.port < 1 || req.port > 65535 || req.downloadPort < 1 || req.downloadPort > 65535) throw new RpcError(status.INVALID_ARGUMENT, "invalid port");
    const [cluster] = await this.db.query<SeedPeerClusterRow>("SELECT * FROM seed_peer_clusters WHERE id = $1", [req.seedPeerClusterId]);
    if (!cluster) throw new RpcError(status.NOT_FOUND, `seed peer cluster ${req.seedPeerClusterId} not found`);
    const [row] = await this.db.query<SeedPeerRow>(
      `INSERT INTO seed_peers (host_name, type, idc, location, ip, port, download_port, seed_peer_cluster_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (host_name, ip, seed_peer_cluster_id) DO UPDATE SET type = EXCLUDED.type, idc = EXCLUDED.idc, location = EXCLUDED.location,
         port = EXCLUDED.port, download_port = EXCLUDED.download_port, updated_at = now()
       RETURNING *`,
      [req.hostname, req.type, req.idc ?? "", req.location ?? "", req.ip, req.port, req.downloadPort, req.seedPeerClusterId],
    );
    if (!row) throw new RpcError(status.INTERNAL, "seed peer upsert returned nothing");
    return this.seedPeerMessage(row, cluster);
  }

  async deleteSeedPeer(req: DeleteSeedPeerRequest): Promise<Empty> {
    requireHost(req.hostname, req.ip);
    const rows = await this.db.query("DELETE FROM seed_peers WHERE host_name = $1 AND ip = $2 AND seed_peer_cluster_id = $3 RETURNING id", [req.hostname, req.ip, req.seedPeerClusterId]);
    if (rows.length === 0) throw new RpcError(status.NOT_FOUND, `seed peer ${req.hostname} (${req.ip}) in cluster ${req.seedPeerClusterId} not found`);
    return {};
  }

  /**
   * First message marks the sender active, every message refreshes last_keep_alive_at, and the
   * end of the stream (or its failure) marks it inactive. Updates run in order per stream.
   */
  keepAlive(call: ServerReadableStream<KeepAliveRequest, Empty>, callback: sendUnaryData<Empty>): void {
    let chain: Promise<unknown> = Promise.resolve();
    let who: { table: "schedulers" | "seed_peers"; column: string; hostname: string; ip: string; clusterId: number } | undefined;
    let failed = false;
    let finished = false;
    const finish = (err: { code: status; details: string } | null) => {
      if (finished) return;
      finished = true;
      if (err) callback(err);
      else callback(null, {});
    };
    const setState = (state: "active" | "inactive") => {
      const w = who;
      if (!w) return Promise.resolve([]);
      const touch = state === "active" ? ", last_keep_alive_at = now()" : "";
      return this.db.query(`UPDATE ${w.table} SET state = $1${touch}, updated_at = now() WHERE host_name = $2 AND ip = $3 AND ${w.column} = $4 RETURNING id`, [state, w.hostname, w.ip, w.clusterId]);
    };
    call.on("data", (req: KeepAliveRequest) => {
      chain = chain.then(async () => {
        if (failed) return;
        if (!who) {
          if (req.sourceType !== SourceType.SCHEDULER_SOURCE && req.sourceType !== SourceType.SEED_PEER_SOURCE) {
            failed = true;
            return finish({ code: status.INVALID_ARGUMENT, details: "keepalive source_type must be SCHEDULER_SOURCE or SEED_PEER_SOURCE" });
          }
          // Keeping a registration active is the registrant's own business.
          const denied =
            req.sourceType === SourceType.SCHEDULER_SOURCE ? this.authz.check(call, "KeepAlive as a scheduler", ["scheduler"]) : this.authz.check(call, "KeepAlive as a seed peer", ["seed-peer"]);
          if (denied) {
            failed = true;
            return finish(denied);
          }
          who =
            req.sourceType === SourceType.SCHEDULER_SOURCE
              ? { table: "schedulers", column: "scheduler_cluster_id", hostname: req.hostname, ip: req.ip, clusterId: req.clusterId }
              : { table: "seed_peers", column: "seed_peer_cluster_id", hostname: req.hostname, ip: req.ip, clusterId: req.clusterId };
        }
        const rows = await setState("active");
        if (rows.length === 0) {
          failed = true;
          finish({ code: status.NOT_FOUND, details: `${who.table === "schedulers" ? "scheduler" : "seed peer"} ${req.hostname} (${req.ip}) in cluster ${req.clusterId} is not registered` });
        }
      });
    });
    const end = (reason: "end" | "error") => {
      chain = chain
        .then(() => (failed ? undefined : setState("inactive")))
        .then(
          () => {
            if (who) this.log.info({ hostname: who.hostname, ip: who.ip, reason }, "keepalive stream closed; marked inactive");
            finish(null);
          },
          (err: unknown) => {
            this.log.error({ err }, "keepalive state update failed");
            finish({ code: status.INTERNAL, details: "keepalive state update failed" });
          },
        );
    };
    call.on("end", () => end("end"));
    call.on("error", () => end("error"));
    call.on("cancelled", () => end("error"));
  }

  /** grpc-js handlers for `server.addService(ManagerService, …)`. */
  handlers(): ManagerServer {
    const l = this.log;
    return {
      getSeedPeer: unary(l, "GetSeedPeer", (r: GetSeedPeerRequest) => this.getSeedPeer(r)),
      listSeedPeers: unary(l, "ListSeedPeers", (r: ListSeedPeersRequest) => this.listSeedPeers(r)),
      updateSeedPeer: unary(l, "UpdateSeedPeer", (r: UpdateSeedPeerRequest) => this.updateSeedPeer(r), (c) => this.authz.check(c, "UpdateSeedPeer", ["seed-peer"])),
      deleteSeedPeer: unary(l, "DeleteSeedPeer", (r: DeleteSeedPeerRequest) => this.deleteSeedPeer(r), (c) => this.authz.check(c, "DeleteSeedPeer", ["seed-peer"])),
      getScheduler: unary(l, "GetScheduler", (r: GetSchedulerRequest) => this.getScheduler(r)),
      updateScheduler: unary(l, "UpdateScheduler", (r: UpdateSchedulerRequest) => this.updateScheduler(r), (c) => this.authz.check(c, "UpdateScheduler", ["scheduler"])),
      listSchedulers: unary(l, "ListSchedulers", (r: ListSchedulersRequest) => this.listSchedulers(r)),
      listApplications: unary(l, "ListApplications", (r: ListApplicationsRequest) => this.listApplications(r)),
      keepAlive: (call, callback) => this.keepAlive(call, callback),
    };
  }
}
