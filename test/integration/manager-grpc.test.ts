// manager.v2.Manager on 127.0.0.1:0 against PGlite and PostgreSQL: a real scheduler registers
// and keeps alive, goes inactive when it stops, and is found by a daemon's ListSchedulers;
// clusters are ranked as Dragonfly scores them.
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRegistry } from "../../src/common/metrics.js";
import { instrumentService } from "../../src/common/grpc/metrics.js";
import { startGrpcServer, type GrpcServerHandle } from "../../src/common/grpc/server.js";
import { silentLogger } from "../../src/common/logger.js";
import type { Empty } from "../../src/gen/google/protobuf/empty.js";
import {
  ManagerClient,
  ManagerService,
  SourceType,
  type DeleteSeedPeerRequest,
  type GetSchedulerRequest,
  type GetSeedPeerRequest,
  type ListApplicationsRequest,
  type ListApplicationsResponse,
  type ListSchedulersResponse,
  type ListSeedPeersRequest,
  type ListSeedPeersResponse,
  type Scheduler,
  type SeedPeer,
  type UpdateSchedulerRequest,
  type UpdateSeedPeerRequest,
} from "../../src/gen/manager/v2/manager.js";
import type { Database } from "../../src/manager/db/database.js";
import { sweepInactive } from "../../src/manager/grpc/liveness.js";
import { ManagerGrpcService } from "../../src/manager/grpc/service.js";
import { ManagerMetrics } from "../../src/manager/metrics.js";
import { databaseVariants } from "../../src/manager/testing.js";
import { startScheduler } from "../../src/scheduler/server.js";
import { until } from "../helpers/until.js";

const { variants, skipped } = databaseVariants();
if (skipped) {
  console.warn(`manager-grpc: ${skipped}`);
  describe("manager gRPC on PostgreSQL", () => it.skip(skipped, () => undefined));
}

function unary<Req, Res>(fn: (req: Req, md: Metadata, cb: (e: ServiceError | null, r: Res) => void) => unknown, req: NoInfer<Req>): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, new Metadata(), (e, r) => (e ? reject(e) : resolve(r))));
}

describe.each(variants)("manager gRPC on $name", (variant) => {
  let db: Database;
  let cleanup: () => Promise<void>;
  let server: GrpcServerHandle;
  let client: InstanceType<typeof ManagerClient>;
  const metrics = new ManagerMetrics(createRegistry(false));

  const stateOf = async (hostname: string) => (await db.query<{ state: string }>("SELECT state FROM schedulers WHERE host_name = $1", [hostname]))[0]?.state;
  const list = (req: Partial<Parameters<typeof client.listSchedulers>[0]>) =>
    unary<Parameters<typeof client.listSchedulers>[0], ListSchedulersResponse>(client.listSchedulers.bind(client), {
      sourceType: SourceType.PEER_SOURCE,
      hostname: "peer-1",
      ip: "127.0.0.1",
      version: "test",
      commit: "",
      schedulerClusterId: 0,
      ...req,
    });

  beforeAll(async () => {
    const opened = await variant.open();
    db = opened.db;
    cleanup = () => opened.cleanup();
    const svc = new ManagerGrpcService(db, silentLogger(), metrics);
    server = await startGrpcServer([{ definition: ManagerService, implementation: instrumentService(ManagerService, svc.handlers(), metrics.registry) }], "127.0.0.1", 0);
    client = new ManagerClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await server?.close();
    await cleanup?.();
  });

  it("registers a real scheduler, marks it active, serves it to ListSchedulers and marks it inactive when it stops", async () => {
    const scheduler = await startScheduler(
      {
        server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", host: "sched-a", logLevel: "silent" },
        manager: { addr: `127.0.0.1:${server.port}`, schedulerClusterID: 1, keepAlive: { interval: "200ms" } },
        seedPeer: { enable: false },
        metrics: { enable: false },
      },
      { logger: silentLogger() },
    );
    try {
      await until(async () => (await stateOf("sched-a")) === "active", "scheduler active");
      const [row] = await db.query<{ port: number; features: string[]; config: Record<string, number> }>("SELECT port, features, config FROM schedulers WHERE host_name = 'sched-a'");
      // The scheduler announces its advertised port (server.advertisePort).
      expect(row?.port).toBe(scheduler.config.server.advertisePort);
      expect(row?.config.manager_keep_alive_interval).toBe(200_000_000);
      const found = await list({});
      const s = found.schedulers.find((x) => x.hostname === "sched-a") as Scheduler;
      expect(s.port).toBe(scheduler.config.server.advertisePort);
      expect(s.state).toBe("active");
      expect(JSON.parse(s.features.toString())).toContain("schedule");
      expect(JSON.parse(s.schedulerCluster?.config.toString() ?? "{}")).toMatchObject({ candidate_parent_limit: 3, filter_parent_limit: 15 });
      expect(JSON.parse(s.schedulerCluster?.clientConfig.toString() ?? "{}")).toMatchObject({ load_limit: 200 });
      // The scheduler reads its cluster config back.
      const own = await unary<GetSchedulerRequest, Scheduler>(client.getScheduler.bind(client), { sourceType: SourceType.SCHEDULER_SOURCE, hostname: "sched-a", schedulerClusterId: 1, ip: "127.0.0.1" });
      expect(own.schedulerCluster?.name).toBe("cluster-1");
    } finally {
      await scheduler.close();
    }
    await until(async () => (await stateOf("sched-a")) === "inactive", "scheduler inactive after its stream ended", 600 * 3);
    expect((await list({})).schedulers.some((x) => x.hostname === "sched-a")).toBe(false);
    // A daemon pinned to the cluster still sees it (and health-checks it itself).
    expect((await list({ schedulerClusterId: 1 })).schedulers.some((x) => x.hostname === "sched-a")).toBe(true);
  });

  it("marks a silent scheduler inactive after three missed intervals while its stream stays open", async () => {
    await unary<UpdateSchedulerRequest, Scheduler>(client.updateScheduler.bind(client), {
      sourceType: SourceType.SCHEDULER_SOURCE,
      hostname: "sched-silent",
      schedulerClusterId: 1,
      ip: "127.0.0.2",
      port: 8002,
      features: [],
      config: Buffer.from(JSON.stringify({ manager_keep_alive_interval: 1_000_000_000 })),
    });
    const stream = client.keepAlive(() => undefined);
    stream.on("error", () => undefined);
    stream.write({ sourceType: SourceType.SCHEDULER_SOURCE, hostname: "sched-silent", clusterId: 1, ip: "127.0.0.2" });
    await until(async () => (await stateOf("sched-silent")) === "active", "silent scheduler active");
    // Two missed 1 s intervals: still active. Past three: inactive.
    await db.query("UPDATE schedulers SET last_keep_alive_at = now() - interval '2 seconds' WHERE host_name = 'sched-silent'");
    await sweepInactive(db);
    expect(await stateOf("sched-silent")).toBe("active");
    await db.query("UPDATE schedulers SET last_keep_alive_at = now() - interval '3.5 seconds' WHERE host_name = 'sched-silent'");
    expect((await sweepInactive(db)).schedulers).toBe(1);
    expect(await stateOf("sched-silent")).toBe("inactive");
    // A heartbeat on the same stream brings it back.
    stream.write({ sourceType: SourceType.SCHEDULER_SOURCE, hostname: "sched-silent", clusterId: 1, ip: "127.0.0.2" });
    await until(async () => (await stateOf("sched-silent")) === "active", "silent scheduler back");
    stream.end();
    await until(async () => (await stateOf("sched-silent")) === "inactive", "stream end");
  });

  it("ranks clusters by CIDR, hostname, IDC, location and default", async () => {
    const mk = async (name: string, scopes: object, isDefault = false) => {
      const [c] = await db.query<{ id: number }>("INSERT INTO scheduler_clusters (tenant_id, name, scopes, is_default) VALUES (1, $1, $2::jsonb, $3) RETURNING id", [name, JSON.stringify(scopes), isDefault]);
      const id = c?.id ?? 0;
      await db.query("INSERT INTO schedulers (host_name, ip, port, state, scheduler_cluster_id, last_keep_alive_at) VALUES ($1, '10.9.0.1', 8002, 'active', $2, now())", [`s-${name}`, id]);
      return id;
    };
    // cluster-1 (default) has no active scheduler now and must not appear.
    const byIdc = await mk("by-idc", { idc: "idc-x|idc-y" });
    const byCidr = await mk("by-cidr", { cidrs: ["172.16.0.0/12"] });
    const byLoc = await mk("by-loc", { location: "asia|cn|bj" });
    const byHost = await mk("by-host", { hostnames: ["^peer-\\d+$"] });
    const fallback = await mk("fallback", {}, true);
    // A cluster whose only scheduler cannot schedule is skipped.
    const [noSched] = await db.query<{ id: number }>("INSERT INTO scheduler_clusters (tenant_id, name) VALUES (1, 'preheat-only') RETURNING id");
    await db.query("INSERT INTO schedulers (host_name, ip, port, state, features, scheduler_cluster_id) VALUES ('s-po', '10.9.0.2', 8002, 'active', '[\"preheat\"]', $1)", [noSched?.id]);

    const order = (r: ListSchedulersResponse) => [...new Set(r.schedulers.map((s) => s.schedulerClusterId))];
    expect(order(await list({ ip: "172.16.5.5", hostname: "peer-7", idc: "idc-y", location: "asia|cn|sh" }))).toEqual([byCidr, byHost, byIdc, byLoc, fallback]);
    expect(order(await list({ ip: "8.8.8.8", hostname: "other", location: "asia|cn|bj" }))).toEqual([byLoc, fallback, byIdc, byCidr, byHost]);
    const res = await list({ ip: "8.8.8.8", hostname: "other" });
    expect(res.schedulers[0]?.schedulerCluster?.name).toBe("fallback");
    await expect(list({ ip: "not-an-ip" })).rejects.toMatchObject({ code: 3 });
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/dragonfly_manager_search_scheduler_cluster_total\{version="test",commit=""\} \d+/);
    expect(text).toMatch(/grpc_server_handled_total\{grpc_type="unary",grpc_service="manager.v2.Manager",grpc_method="ListSchedulers",grpc_code="InvalidArgument"\} 1/);
  });

  it("serves applications and seed peers, and refuses what it does not know", async () => {
    await db.query(`INSERT INTO applications (tenant_id, name, url, priority) VALUES (1, 'app-a', 'https://a.example', '{"value": 2, "urls": [{"regex": "^https://a", "value": 3}]}')`);
    const apps = await unary<ListApplicationsRequest, ListApplicationsResponse>(client.listApplications.bind(client), { sourceType: SourceType.SCHEDULER_SOURCE, hostname: "sched-a", ip: "127.0.0.1" });
    expect(apps.applications.find((a) => a.name === "app-a")?.priority).toEqual({ value: 2, urls: [{ regex: "^https://a", value: 3 }] });

    const sp = await unary<UpdateSeedPeerRequest, SeedPeer>(client.updateSeedPeer.bind(client), { sourceType: SourceType.SEED_PEER_SOURCE, hostname: "seed-a", type: "super", ip: "127.0.0.3", port: 4000, downloadPort: 4001, seedPeerClusterId: 1 });
    expect(sp.seedPeerCluster?.name).toBe("cluster-1");
    await expect(unary<UpdateSeedPeerRequest, SeedPeer>(client.updateSeedPeer.bind(client), { sourceType: SourceType.SEED_PEER_SOURCE, hostname: "seed-b", type: "normal", ip: "127.0.0.3", port: 4000, downloadPort: 4001, seedPeerClusterId: 1 })).rejects.toMatchObject({ code: 3 });
    await expect(unary<UpdateSeedPeerRequest, SeedPeer>(client.updateSeedPeer.bind(client), { sourceType: SourceType.SEED_PEER_SOURCE, hostname: "seed-b", type: "super", ip: "127.0.0.3", port: 4000, downloadPort: 4001, seedPeerClusterId: 999 })).rejects.toMatchObject({ code: 5 });
    expect((await unary<GetSeedPeerRequest, SeedPeer>(client.getSeedPeer.bind(client), { sourceType: SourceType.SEED_PEER_SOURCE, hostname: "seed-a", seedPeerClusterId: 1, ip: "127.0.0.3" })).downloadPort).toBe(4001);
    const ka = client.keepAlive(() => undefined);
    ka.on("error", () => undefined);
    ka.write({ sourceType: SourceType.SEED_PEER_SOURCE, hostname: "seed-a", clusterId: 1, ip: "127.0.0.3" });
    await until(async () => (await unary<ListSeedPeersRequest, ListSeedPeersResponse>(client.listSeedPeers.bind(client), { sourceType: SourceType.PEER_SOURCE, hostname: "p", ip: "127.0.0.9", version: "", commit: "" })).seedPeers.some((s) => s.hostname === "seed-a"), "seed peer active");
    ka.end();
    await unary<DeleteSeedPeerRequest, Empty>(client.deleteSeedPeer.bind(client), { sourceType: SourceType.SEED_PEER_SOURCE, hostname: "seed-a", seedPeerClusterId: 1, ip: "127.0.0.3" });
    await expect(unary<DeleteSeedPeerRequest, Empty>(client.deleteSeedPeer.bind(client), { sourceType: SourceType.SEED_PEER_SOURCE, hostname: "seed-a", seedPeerClusterId: 1, ip: "127.0.0.3" })).rejects.toMatchObject({ code: 5 });

    await expect(unary<UpdateSchedulerRequest, Scheduler>(client.updateScheduler.bind(client), { sourceType: SourceType.SCHEDULER_SOURCE, hostname: "x", schedulerClusterId: 999, ip: "127.0.0.1", port: 8002, features: [], config: Buffer.alloc(0) })).rejects.toMatchObject({ code: 5 });
    await expect(unary<GetSchedulerRequest, Scheduler>(client.getScheduler.bind(client), { sourceType: SourceType.SCHEDULER_SOURCE, hostname: "nope", schedulerClusterId: 1, ip: "" })).rejects.toMatchObject({ code: 5 });
    // KeepAlive from an unregistered scheduler is refused.
    const err = await new Promise<ServiceError | null>((resolve) => {
      const s = client.keepAlive((e) => resolve(e));
      s.write({ sourceType: SourceType.SCHEDULER_SOURCE, hostname: "ghost", clusterId: 1, ip: "127.0.0.1" });
    });
    expect(err?.code).toBe(5);
  });
});
