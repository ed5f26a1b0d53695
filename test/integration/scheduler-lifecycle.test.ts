// Scheduler process concerns: the CLI's config handling, registration and keepalive with a
// manager, seed peers dropped from the ring when their health check fails, and the A/B
// evaluator's per-arm metrics.
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, status, type sendUnaryData, type ServerReadableStream, type ServerUnaryCall } from "@grpc/grpc-js";
import { Command } from "commander";
import { afterAll, describe, expect, it, vi } from "vitest";
import { register, startSchedulerCommand } from "../../src/cli/commands/scheduler.js";
import { runProgram } from "../../src/cli/program.js";
import { HealthClient } from "../../src/common/grpc/health.js";
import { startGrpcServer } from "../../src/common/grpc/server.js";
import { taskIdFromUrl } from "../../src/common/ids.js";
import { HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health.js";
import { ManagerService, SourceType, type KeepAliveRequest, type UpdateSchedulerRequest } from "../../src/gen/manager/v2/manager.js";
import { armOf } from "../../src/scheduler/scheduling/evaluator/ab.js";
import { Announce, announceHost, download, hostMsg, MiB, piece, startTestScheduler, unaryCall } from "./scheduler-helpers.js";

const dir = mkdtempSync(join(tmpdir(), "sched-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("damselfly scheduler command", () => {
  it("rejects a config with an unknown key or a bad value, naming it", async () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "scheduler:\n  retryLimt: 3\n");
    await expect(startSchedulerCommand({ config: bad })).rejects.toThrow(`${bad}: scheduler.retryLimt: unknown key`);
    writeFileSync(bad, "scheduler:\n  algorithm: magic\n");
    await expect(startSchedulerCommand({ config: bad })).rejects.toThrow(/scheduler\.algorithm/);
    const program = new Command("damselfly").exitOverride();
    register(program);
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (errors.push(String(s)), true));
    try {
      expect(await runProgram(program, ["scheduler", "--config", join(dir, "missing.yaml")])).toBe(1);
    } finally {
      process.stderr.write = write;
    }
    expect(errors.join("")).toMatch(/cannot read config .*missing\.yaml/);
  });

  it("starts from a YAML file and serves health on the configured port", async () => {
    const good = join(dir, "good.yaml");
    writeFileSync(good, ["server:", "  listenIP: 127.0.0.1", "  port: 0", "metrics:", "  enable: false", "scheduler:", "  algorithm: bandwidth", "  retryInterval: 100ms", "seedPeer:", "  enable: false", ""].join("\n"));
    const handle = await startSchedulerCommand({ config: good });
    try {
      expect(handle.config.scheduler.retryInterval).toBe(100);
      expect(handle.metricsPort).toBe(0);
      const h = new HealthClient(`127.0.0.1:${handle.grpcPort}`, credentials.createInsecure());
      expect((await unaryCall(h.check.bind(h), { service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      h.close();
    } finally {
      await handle.close();
    }
  });
});

describe("manager registration", () => {
  it("sends UpdateScheduler at start, then KeepAlive messages on one stream", async () => {
    const updates: UpdateSchedulerRequest[] = [];
    const keepAlives: KeepAliveRequest[] = [];
    const manager = await startGrpcServer(
      [
        {
          definition: ManagerService,
          implementation: {
            updateScheduler: (call: ServerUnaryCall<UpdateSchedulerRequest, unknown>, cb: sendUnaryData<unknown>) => {
              updates.push(call.request);
              cb(null, { id: 1, hostname: call.request.hostname, ip: call.request.ip, port: call.request.port, state: "active", schedulerClusterId: 1, seedPeers: [], features: Buffer.alloc(0) });
            },
            keepAlive: (call: ServerReadableStream<KeepAliveRequest, unknown>, cb: sendUnaryData<unknown>) => {
              call.on("data", (m: KeepAliveRequest) => keepAlives.push(m));
              call.on("end", () => cb(null, {}));
            },
          },
        },
      ],
      "127.0.0.1",
      0,
    );
    const { handle, client } = await startTestScheduler({
      server: { host: "sched-1", advertiseIP: "10.9.8.7", advertisePort: 8002 },
      host: { idc: "idc-a", location: "cn|hz" },
      manager: { addr: `127.0.0.1:${manager.port}`, schedulerClusterID: 3, keepAlive: { interval: "50ms" } },
    });
    try {
      expect(updates).toHaveLength(1);
      expect(updates[0]).toMatchObject({ sourceType: SourceType.SCHEDULER_SOURCE, hostname: "sched-1", ip: "10.9.8.7", port: 8002, idc: "idc-a", location: "cn|hz", schedulerClusterId: 3, features: ["schedule", "preheat"] });
      expect(JSON.parse(updates[0]?.config.toString() ?? "{}")).toEqual({ manager_keep_alive_interval: 50_000_000 });
      await expect.poll(() => keepAlives.length, { timeout: 5000 }).toBeGreaterThanOrEqual(3);
      expect(keepAlives[0]).toEqual({ sourceType: SourceType.SCHEDULER_SOURCE, hostname: "sched-1", clusterId: 3, ip: "10.9.8.7" });
    } finally {
      client.close();
      await handle.close();
      await manager.close();
    }
  });

  it("fails to start when the manager refuses the registration", async () => {
    const manager = await startGrpcServer(
      [{ definition: ManagerService, implementation: { updateScheduler: (_c: unknown, cb: sendUnaryData<unknown>) => cb({ code: status.PERMISSION_DENIED, details: "no" }) } }],
      "127.0.0.1",
      0,
    );
    try {
      await expect(startTestScheduler({ manager: { addr: `127.0.0.1:${manager.port}` } })).rejects.toThrow(/UpdateScheduler failed/);
    } finally {
      await manager.close();
    }
  });
});

describe("request rate limit", () => {
  it("answers RESOURCE_EXHAUSTED beyond server.requestRateLimit", async () => {
    const { handle, client } = await startTestScheduler({ server: { requestRateLimit: 2 } });
    try {
      const results = await Promise.allSettled(Array.from({ length: 6 }, () => unaryCall(client.listHosts.bind(client), {})));
      const rejected = results.filter((r) => r.status === "rejected").map((r) => (r.reason as { code: number }).code);
      expect(results.filter((r) => r.status === "fulfilled").length).toBeGreaterThanOrEqual(2);
      expect(rejected.length).toBeGreaterThan(0);
      expect(new Set(rejected)).toEqual(new Set([status.RESOURCE_EXHAUSTED]));
    } finally {
      client.close();
      await handle.close();
    }
  });
});

describe("seed peer health and A/B metrics", () => {
  it("a seed that fails its health check leaves the ring, so the first peer goes to the origin", async () => {
    const { handle, client } = await startTestScheduler({ scheduler: { retryInterval: "10ms" } });
    try {
      // Nothing listens on this port.
      const idle = await startGrpcServer([], "127.0.0.1", 0);
      const deadPort = idle.port;
      await idle.close();
      await announceHost(client, hostMsg("127.0.0.1-dead-seed", { type: 1, port: deadPort }));
      await announceHost(client, hostMsg("10.2.0.1-a"));
      expect(handle.seedPeers?.hasAvailable()).toBe(true);
      await handle.seedPeers?.refresh();
      expect(handle.seedPeers?.hasAvailable()).toBe(false);
      const url = "https://origin.example.com/dead-seed";
      const a = new Announce(client, "10.2.0.1-a", taskIdFromUrl({ url }), "p-dead");
      a.register(download(url, 8 * MiB));
      expect((await a.next()).response?.$case).toBe("needBackToSourceResponse");
      a.call.end();
      await a.status;
    } finally {
      client.close();
      await handle.close();
    }
  });

  it("connects to a seed as soon as it is announced, before any task is triggered", async () => {
    const { handle, client } = await startTestScheduler();
    const seed = await startGrpcServer([], "127.0.0.1", 0);
    // A TCP relay in front of the seed counts the connections the scheduler opens to it.
    const sockets: Socket[] = [];
    let connections = 0;
    const relay = createServer((down) => {
      connections++;
      const up = createConnection(seed.port, "127.0.0.1");
      sockets.push(down, up);
      down.pipe(up).pipe(down);
      up.on("error", () => down.destroy());
      down.on("error", () => up.destroy());
    });
    const relayPort = await new Promise<number>((resolve) => relay.listen(0, "127.0.0.1", () => resolve((relay.address() as { port: number }).port)));
    try {
      await announceHost(client, hostMsg("127.0.0.1-eager-seed", { type: 1, port: relayPort }));
      // No task was triggered and the periodic health sweep is off in these tests.
      await vi.waitFor(() => expect(connections).toBe(1), { timeout: 5000, interval: 20 });
      expect(handle.seedPeers?.hasAvailable()).toBe(true);
    } finally {
      client.close();
      await handle.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => relay.close(() => resolve()));
      await seed.close();
    }
  });

  it("algorithm ab reports download time per arm and evaluator", async () => {
    const { handle, client } = await startTestScheduler({ seedPeer: { enable: false }, metrics: { enableHost: true }, scheduler: { algorithm: "ab", retryInterval: "10ms" } });
    try {
      const hosts = Array.from({ length: 8 }, (_, i) => `10.3.0.${i}-ab`);
      for (const h of hosts) await announceHost(client, hostMsg(h));
      expect(new Set(hosts.map(armOf)).size).toBe(2);
      const url = "https://origin.example.com/ab";
      const taskId = taskIdFromUrl({ url });
      for (const [i, h] of hosts.entries()) {
        const a = new Announce(client, h, taskId, `ab-${i}`);
        a.register(download(url, 8 * MiB));
        const r = await a.next();
        const b2s = r.response?.$case === "needBackToSourceResponse";
        a.send(b2s ? { $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} } : { $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
        for (let n = 0; n < 2; n++) {
          const p = piece(n, 4 * MiB, 4 * MiB, b2s ? undefined : "ab-0");
          a.send(b2s ? { $case: "downloadPieceBackToSourceFinishedRequest", downloadPieceBackToSourceFinishedRequest: { piece: p } } : { $case: "downloadPieceFinishedRequest", downloadPieceFinishedRequest: { piece: p } });
        }
        a.send(b2s ? { $case: "downloadPeerBackToSourceFinishedRequest", downloadPeerBackToSourceFinishedRequest: {} } : { $case: "downloadPeerFinishedRequest", downloadPeerFinishedRequest: {} });
        expect((await a.status).code).toBe(status.OK);
      }
      const text = await (await fetch(`http://127.0.0.1:${handle.metricsPort}/metrics`)).text();
      expect(text).toMatch(/dragonfly_scheduler_ab_download_peer_duration_milliseconds\{quantile="0\.95",arm="a",evaluator="default",task_size_level="\d+"\}/);
      expect(text).toMatch(/dragonfly_scheduler_ab_download_peer_duration_milliseconds\{quantile="0\.95",arm="b",evaluator="bandwidth",task_size_level="\d+"\}/);
      const counts = [...text.matchAll(/dragonfly_scheduler_ab_download_peer_duration_milliseconds_count\{arm="(a|b)"[^}]*\} (\d+)/g)].map((m) => [m[1], Number(m[2])] as const);
      const total = counts.reduce((s, [, n]) => s + n, 0);
      expect(total).toBe(hosts.length);
      expect(text).toMatch(/dragonfly_scheduler_host_traffic\{type="upload",task_type="STANDARD",host_type="normal",host_id="10\.3\.0\.\d-ab"/);
    } finally {
      client.close();
      await handle.close();
    }
  });
});
