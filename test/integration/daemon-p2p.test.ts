// One seed peer and four peers download one file: the origin serves it about once and every
// output verifies. Then the failure paths: no scheduler, back-to-source disabled.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { existsSync } from "node:fs";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

const SIZE = 256 * 1024 * 1024;

describe("dfdaemon P2P download", () => {
  let origin: Origin;
  let scheduler: SchedulerHandle;
  let seed: DaemonHandle;
  const peers: DaemonHandle[] = [];
  const out = tempDir("outputs");

  beforeAll(async () => {
    origin = await startOrigin(makeContent(SIZE, 7));
    scheduler = await startTestScheduler();
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    seed = await startTestDaemon({ name: "seed-1", schedulers: [addr], seed: true });
    for (let i = 0; i < 4; i++) peers.push(await startTestDaemon({ name: `peer-${i}`, schedulers: [addr] }));
  });

  afterAll(async () => {
    for (const d of [...peers, seed]) await d?.close();
    await scheduler?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  it("fetches the origin about once for a seed peer and four peers, and every output verifies", async () => {
    const results = await Promise.all(peers.map((p, i) => downloadVia(p.socketPath, { url: origin.url(), outputPath: join(out, `out-${i}`) })));
    for (const [i, r] of results.entries()) {
      expect(r.contentLength).toBe(SIZE);
      expect(sha256File(join(out, `out-${i}`))).toBe(origin.sha256);
    }
    expect(origin.bytesServed).toBeLessThanOrEqual(1.1 * SIZE);
    // The task is shared: the same id everywhere, finished on the seed peer too.
    expect(new Set(results.map((r) => r.taskId)).size).toBe(1);
  });

  it("lets the swarm stand in for an origin that is down, never for one that refuses the client", async () => {
    const late = await startTestDaemon({ name: "late", schedulers: [`127.0.0.1:${scheduler.grpcPort}`] });
    peers.push(late);
    try {
      origin.failWith = 401;
      await expect(downloadVia(late.socketPath, { url: origin.url(), outputPath: join(out, "refused") })).rejects.toThrow(/401/);
      expect(existsSync(join(out, "refused"))).toBe(false);
      origin.failWith = 503;
      await downloadVia(late.socketPath, { url: origin.url(), outputPath: join(out, "origin-down") });
      expect(sha256File(join(out, "origin-down"))).toBe(origin.sha256);
    } finally {
      origin.failWith = undefined;
    }
  });

  it("refuses to replace an existing output without overwrite and leaves it untouched", async () => {
    const path = join(out, "out-0");
    await expect(downloadVia(peers[0]!.socketPath, { url: origin.url(), outputPath: path })).rejects.toThrow(/already exists/);
    expect(sha256File(path)).toBe(origin.sha256);
  });

  it("verifies a whole-file digest and fails a wrong one without leaving a file", async () => {
    const good = join(out, "digest-ok");
    await downloadVia(peers[1]!.socketPath, { url: origin.url(), outputPath: good, digest: `sha256:${origin.sha256}` });
    expect(sha256File(good)).toBe(origin.sha256);
    const bad = join(out, "digest-bad");
    await expect(downloadVia(peers[2]!.socketPath, { url: origin.url("/file.bin?v=2"), outputPath: bad, digest: `sha256:${"0".repeat(64)}` })).rejects.toThrow(/digest mismatch/);
    expect(existsSync(bad)).toBe(false);
  });

  it("reports origin errors with their status and leaves no file", async () => {
    const path = join(out, "missing");
    await expect(downloadVia(peers[3]!.socketPath, { url: origin.url("/nope"), outputPath: path })).rejects.toThrow(/404/);
    expect(existsSync(path)).toBe(false);
  });
});

describe("dfdaemon without a scheduler", () => {
  it("goes back to source, and fails clearly when back-to-source is disabled", async () => {
    const origin = await startOrigin(makeContent(20 * 1024 * 1024, 3));
    const daemon = await startTestDaemon({ name: "lonely", schedulers: ["127.0.0.1:1"] });
    const out = tempDir("lonely-out");
    try {
      await downloadVia(daemon.socketPath, { url: origin.url(), outputPath: join(out, "a") });
      expect(sha256File(join(out, "a"))).toBe(origin.sha256);
      const err = downloadVia(daemon.socketPath, { url: origin.url("/file.bin?x=1"), outputPath: join(out, "b"), disableBackToSource: true });
      await expect(err).rejects.toThrow(/back-to-source is disabled/);
      expect(existsSync(join(out, "b"))).toBe(false);
      // An origin that ignores Range is read in one stream and cut into pieces.
      origin.rangeSupport = false;
      await downloadVia(daemon.socketPath, { url: origin.url("/file.bin?norange=1"), outputPath: join(out, "c") });
      expect(sha256File(join(out, "c"))).toBe(origin.sha256);
    } finally {
      await daemon.close();
      await origin.close();
      cleanupTempDirs();
    }
  });
});
