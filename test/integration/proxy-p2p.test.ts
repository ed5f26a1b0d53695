// Two peers pull the same layers through their own proxies: the registry serves each blob about
// once, the second peer gets it from the swarm, and with task ids based on the blob digest the
// same layer from a second registry is the same task.
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { cleanupTempDirs, startTestDaemon, startTestScheduler, testDaemonConfig } from "../helpers/swarm.js";
import { blobContent, startFakeRegistry, type FakeRegistry } from "./proxy-fixtures.js";

function pull(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer; taskId: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), taskId: String(res.headers["x-dragonfly-task-id"]) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

const SIZE = 12 * 1024 * 1024 + 4321;

describe("proxy through the swarm", () => {
  let reg: FakeRegistry;
  let mirror2: FakeRegistry;
  let scheduler: SchedulerHandle;
  let seed: DaemonHandle;
  const peers: DaemonHandle[] = [];

  beforeAll(async () => {
    reg = await startFakeRegistry();
    mirror2 = await startFakeRegistry();
    scheduler = await startTestScheduler();
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    seed = await startTestDaemon({ name: "proxy-seed", schedulers: [addr], seed: true });
    for (let i = 0; i < 2; i++) {
      const config = testDaemonConfig({
        name: `proxy-peer-${i}`,
        schedulers: [addr],
        overrides: { proxy: { server: { ip: "127.0.0.1", port: 0 }, registryMirror: { addr: reg.url, enableTaskIDBasedBlobDigest: true } } },
      });
      peers.push(await startDaemon(config, silentLogger()));
    }
  });

  afterAll(async () => {
    for (const d of [...peers, seed]) await d?.close();
    await scheduler?.close();
    await reg?.close();
    await mirror2?.close();
    cleanupTempDirs();
  });

  it("serves each layer from the registry about once for two peers", async () => {
    const layers = [blobContent(SIZE, 41), blobContent(SIZE / 2, 42)];
    const digests = layers.map((l) => reg.add("team/app", { content: l }));
    for (const p of peers) {
      for (const [i, d] of digests.entries()) {
        const r = await pull(p.proxyPort, `/v2/team/app/blobs/${d}`);
        expect(r.status).toBe(200);
        expect(r.body.equals(layers[i] ?? Buffer.alloc(0))).toBe(true);
        // enableTaskIDBasedBlobDigest: the task id is the digest's hex.
        expect(r.taskId).toBe(d.slice("sha256:".length));
      }
    }
    for (const [i, d] of digests.entries()) expect(reg.blobBytes.get(d) ?? 0).toBeLessThanOrEqual(1.1 * (layers[i]?.length ?? 0));
  });

  it("treats the same layer from another registry as the same task", async () => {
    const layer = blobContent(SIZE, 43);
    const d = reg.add("team/app", { content: layer });
    mirror2.add("other/app", { content: layer });
    const a = await pull(peers[0]!.proxyPort, `/v2/team/app/blobs/${d}`);
    const b = await pull(peers[1]!.proxyPort, `/v2/other/app/blobs/${d}`, { "x-dragonfly-registry": mirror2.url });
    expect(a.body.equals(layer)).toBe(true);
    expect(b.body.equals(layer)).toBe(true);
    expect(b.taskId).toBe(a.taskId);
    expect((reg.blobBytes.get(d) ?? 0) + (mirror2.blobBytes.get(d) ?? 0)).toBeLessThanOrEqual(1.1 * SIZE);
  });
});
