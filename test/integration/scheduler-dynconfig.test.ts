// A scheduler registered with a real manager (PGlite) applies its cluster's config live: the
// cluster's candidate_parent_limit and filter_parent_limit, changed through the manager's REST
// API, change how many candidate parents a newly registered peer is offered, without a
// restart; clearing them brings the local scheduler.yaml values back. A value the scheduler
// cannot use (written to the database by hand: the REST API refuses it) is logged once and
// ignored. Peers are real scheduler.v2 clients (AnnouncePeer).
import { credentials, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { taskIdFromUrl } from "../../src/common/ids.js";
import { createLogger, silentLogger } from "../../src/common/logger.js";
import { SchedulerClient } from "../../src/gen/scheduler/v2/scheduler.js";
import { startManager, type ManagerHandle } from "../../src/manager/server.js";
import { startScheduler, type SchedulerHandle } from "../../src/scheduler/server.js";
import { restClient, type RestCall } from "../helpers/manager-api.js";
import { cleanupTempDirs, startTestDaemon, tempDir } from "../helpers/swarm.js";
import { Announce, announceHost, download, hostMsg, MiB, piece, unaryCall } from "./scheduler-helpers.js";

const ROOT_PASSWORD = "dyncfg-root-pw-1";
const PL = 4 * MiB;
const LEN = 10 * MiB;
const URL_ = "https://origin.example.com/dynconfig";
const TASK = taskIdFromUrl({ url: URL_ });
/** Peers that hold the whole task: more than the local candidateParentLimit (3), fewer than filterParentLimit (15). */
const FINISHED = 11;

describe("scheduler dynconfig: the cluster's config from the manager drives scheduling", () => {
  let manager: ManagerHandle;
  let scheduler: SchedulerHandle;
  let client: InstanceType<typeof SchedulerClient>;
  let json: RestCall;
  let token: string;
  const logs: Array<{ level: number; msg: string; key?: string }> = [];
  let probes = 0;

  const getSchedulerCalls = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${manager.metricsPort}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith("grpc_server_handled_total") && l.includes('grpc_method="GetScheduler"') && l.includes('grpc_code="OK"'));
    return line ? Number(line.split(" ").at(-1)) : 0;
  };

  /** A new peer on its own host registers; returns how many candidate parents it is offered, then leaves. */
  const offered = async (): Promise<number> => {
    const peerId = `probe-${++probes}`;
    const a = new Announce(client, "10.9.0.1-probe", TASK, peerId);
    a.register(download(URL_, LEN));
    const r = await a.next();
    a.call.end();
    await unaryCall(client.deletePeer.bind(client), { hostId: "10.9.0.1-probe", taskId: TASK, peerId });
    if (r.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${r.response?.$case}`);
    return r.response.normalTaskResponse.candidateParents.length;
  };

  const patchCluster = async (field: "config" | "client_config", value: Record<string, number>) => {
    const res = await json<Record<string, unknown>>("PATCH", "/api/v1/scheduler-clusters/1", token, { [field]: value });
    expect(res.status).toBe(200);
    expect(res.body[field]).toEqual(value);
  };
  const setClusterConfig = (config: Record<string, number>) => patchCluster("config", config);

  beforeAll(async () => {
    manager = await startManager(
      {
        server: { dataDir: tempDir("dynconfig-manager"), logLevel: "silent", grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 } }, rest: { addr: "127.0.0.1:0" } },
        metrics: { enable: true, addr: "127.0.0.1:0" },
      },
      { logger: silentLogger(), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: ROOT_PASSWORD } },
    );
    json = restClient(`http://127.0.0.1:${manager.restPort}`);
    const signin = await json<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name: "root", password: ROOT_PASSWORD });
    expect(signin.status).toBe(200);
    token = signin.body.token;
    const logger = createLogger({ component: "scheduler", level: "info" }, { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) });
    scheduler = await startScheduler(
      {
        server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", advertisePort: 0, host: "sched-dyn" },
        metrics: { enable: false },
        seedPeer: { enable: false },
        scheduler: { retryInterval: "20ms", candidateParentLimit: 3, filterParentLimit: 15 },
        manager: { addr: `127.0.0.1:${manager.grpcPort}`, keepAlive: { interval: "1s" } },
        dynConfig: { refreshInterval: "100ms" },
      },
      // rng 0: the filter's sample of the task's peers is the first ones registered, so a
      // filter_parent_limit below the task's peer count leaves out the probe itself.
      { logger, rng: () => 0 },
    );
    client = new SchedulerClient(`127.0.0.1:${scheduler.grpcPort}`, credentials.createInsecure());
    await announceHost(client, hostMsg("10.9.0.1-probe"));
    for (let i = 1; i <= FINISHED; i++) {
      const hostId = `10.9.1.${i}-h`;
      await announceHost(client, hostMsg(hostId));
      const a = new Announce(client, hostId, TASK, `finished-${i}`);
      a.register(download(URL_, LEN, { needBackToSource: true }));
      expect((await a.next()).response?.$case).toBe("needBackToSourceResponse");
      a.send({ $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} });
      for (let n = 0; n < 3; n++) a.send({ $case: "downloadPieceBackToSourceFinishedRequest", downloadPieceBackToSourceFinishedRequest: { piece: piece(n, PL, Math.min(PL, LEN - n * PL)) } });
      a.send({ $case: "downloadPeerBackToSourceFinishedRequest", downloadPeerBackToSourceFinishedRequest: {} });
      a.call.end();
      expect((await a.status).code).toBe(status.OK);
    }
  });

  afterAll(async () => {
    client?.close();
    await scheduler?.close();
    await manager?.close();
    cleanupTempDirs();
  });

  it("offers the local candidateParentLimit while the cluster sets nothing", async () => {
    expect(await offered()).toBe(3);
  });

  it("applies candidate_parent_limit and filter_parent_limit changed through the REST API, and the local values once they are cleared", async () => {
    await setClusterConfig({ candidate_parent_limit: 20 });
    // Every finished peer: the filter's local limit (15) samples all of them.
    await expect.poll(offered, { timeout: 10_000, interval: 50 }).toBe(FINISHED);
    await setClusterConfig({ candidate_parent_limit: 20, filter_parent_limit: 10 });
    await expect.poll(offered, { timeout: 10_000, interval: 50 }).toBe(10);
    expect(scheduler.scheduling.parentLimits).toEqual({ candidateParentLimit: 20, filterParentLimit: 10 });
    await setClusterConfig({});
    await expect.poll(offered, { timeout: 10_000, interval: 50 }).toBe(3);
    expect(logs.filter((l) => l.msg === "applied the scheduler cluster's config").length).toBeGreaterThanOrEqual(3);
  });

  it("logs a value it cannot use once, ignores it and keeps the local value", async () => {
    await setClusterConfig({ candidate_parent_limit: 5 });
    await expect.poll(offered, { timeout: 10_000, interval: 50 }).toBe(5);
    // The REST API refuses 50 (Dragonfly's binding: at most 20); a manager's database may hold it anyway.
    await manager.db.query("UPDATE scheduler_clusters SET config = $1::jsonb WHERE id = 1", [JSON.stringify({ candidate_parent_limit: 50, filter_parent_limit: 12 })]);
    const warned = () => logs.filter((l) => l.key === "candidate_parent_limit").length;
    await expect.poll(warned, { timeout: 10_000, interval: 50 }).toBe(1);
    // Several more refreshes read the same bad value.
    const calls = await getSchedulerCalls();
    await expect.poll(getSchedulerCalls, { timeout: 10_000, interval: 50 }).toBeGreaterThanOrEqual(calls + 3);
    expect(warned()).toBe(1);
    expect(scheduler.scheduling.parentLimits).toEqual({ candidateParentLimit: 3, filterParentLimit: 12 });
    expect(await offered()).toBe(3);
  });

  it("a daemon that finds its scheduler through the manager applies the cluster's client_config bandwidth keys (ours) live", async () => {
    const daemon = await startTestDaemon({
      name: "dyn-peer",
      schedulers: [],
      overrides: { manager: { addr: `127.0.0.1:${manager.grpcPort}` }, dynconfig: { refreshInterval: "100ms" }, proxy: { server: { ip: "127.0.0.1", port: 0 }, prefetchBandwidthLimit: "20MB" } },
    });
    try {
      expect(daemon.schedulers.all().map(([a]) => a)).toEqual([`127.0.0.1:${scheduler.grpcPort}`]);
      expect(daemon.bandwidth.limits).toEqual({ download: 50e9, prefetch: 20e6 });
      await patchCluster("client_config", { load_limit: 200, download_bandwidth_limit: 8_000_000 });
      await expect.poll(() => daemon.bandwidth.limits, { timeout: 10_000, interval: 50 }).toEqual({ download: 8_000_000, prefetch: 20e6 });
      await patchCluster("client_config", { load_limit: 200, download_bandwidth_limit: 8_000_000, prefetch_bandwidth_limit: 3_000_000 });
      await expect.poll(() => daemon.bandwidth.limits, { timeout: 10_000, interval: 50 }).toEqual({ download: 8_000_000, prefetch: 3_000_000 });
      // The REST API refuses a limit below 1; one in the database anyway is ignored.
      expect((await json("PATCH", "/api/v1/scheduler-clusters/1", token, { client_config: { download_bandwidth_limit: -5 } })).status).toBe(400);
      await manager.db.query("UPDATE scheduler_clusters SET client_config = $1::jsonb WHERE id = 1", [JSON.stringify({ download_bandwidth_limit: -5, prefetch_bandwidth_limit: 3_000_000 })]);
      await expect.poll(() => daemon.bandwidth.limits, { timeout: 10_000, interval: 50 }).toEqual({ download: 50e9, prefetch: 3_000_000 });
      await patchCluster("client_config", { load_limit: 200 });
      await expect.poll(() => daemon.bandwidth.limits, { timeout: 10_000, interval: 50 }).toEqual({ download: 50e9, prefetch: 20e6 });
    } finally {
      await daemon.close();
    }
  });
});
