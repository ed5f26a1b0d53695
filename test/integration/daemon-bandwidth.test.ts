// download.bandwidthLimit and proxy.prefetchBandwidthLimit on real daemons, checked through the
// token buckets' own accounting rather than the clock: every byte of a download, from the
// origin or from a parent, passes the download bucket; a ranged proxy request with prefetch
// passes the prefetch bucket instead; and a download held back by a tiny limit goes on once the
// limit is raised while it waits.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { startDaemon, type DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, startTestDaemon, startTestScheduler, tempDir, testDaemonConfig } from "../helpers/swarm.js";
import { blobContent, get, startFakeRegistry, type FakeRegistry } from "./proxy-fixtures.js";

const MiB = 1024 * 1024;
const SIZE = 12 * MiB + 777;

describe("daemon download bandwidth", () => {
  let scheduler: SchedulerHandle;
  let origin: Origin;
  let slowOrigin: Origin;
  let reg: FakeRegistry;
  const daemons: DaemonHandle[] = [];

  beforeAll(async () => {
    scheduler = await startTestScheduler();
    origin = await startOrigin(makeContent(SIZE, 5));
    slowOrigin = await startOrigin(makeContent(SIZE, 6));
    reg = await startFakeRegistry();
  });

  afterAll(async () => {
    for (const d of daemons) await d.close();
    await scheduler?.close();
    await origin?.close();
    await slowOrigin?.close();
    await reg?.close();
    cleanupTempDirs();
  });

  it("charges every byte taken from the origin, and from a parent, to download.bandwidthLimit", async () => {
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    const first = await startTestDaemon({ name: "bw-first", schedulers: [addr] });
    daemons.push(first);
    const second = await startTestDaemon({ name: "bw-second", schedulers: [addr] });
    daemons.push(second);
    expect(first.bandwidth.limits).toEqual({ download: 50e9, prefetch: 10e9 });

    const a = await downloadVia(first.socketPath, { url: origin.url() });
    expect(a.contentLength).toBe(SIZE);
    expect(first.bandwidth.download.admitted).toBe(SIZE);
    const served = origin.bytesServed;
    const b = await downloadVia(second.socketPath, { url: origin.url() });
    expect(b.contentLength).toBe(SIZE);
    // From the first daemon, not the origin (which answers the length probe only).
    expect(origin.bytesServed - served).toBeLessThan(1024);
    expect(second.bandwidth.download.admitted).toBe(SIZE);
    expect(second.bandwidth.prefetch.admitted).toBe(0);
  });

  it("holds a download back at a tiny limit and lets it go on once the limit is raised", async () => {
    const download = { server: { socketPath: join(tempDir("bw-slow-sock"), "dfdaemon.sock") }, bandwidthLimit: "1B", concurrentPieceCount: 1 };
    const d = await startDaemon(testDaemonConfig({ name: "bw-slow", schedulers: [], overrides: { download } }), silentLogger());
    daemons.push(d);
    let pieces = 0;
    let settled = false;
    const dl = downloadVia(d.socketPath, { url: slowOrigin.url() }, () => pieces++).finally(() => (settled = true));
    // The first piece's bytes are charged: 4 MiB at 1 B/s is weeks away.
    await expect.poll(() => d.bandwidth.download.admitted, { timeout: 10_000, interval: 20 }).toBeGreaterThan(0);
    expect(settled).toBe(false);
    expect(pieces).toBeLessThanOrEqual(1);
    d.bandwidth.setLimits({ download: 1e12 });
    const r = await dl;
    expect(r.contentLength).toBe(SIZE);
    expect(r.pieces).toBe(Math.ceil(SIZE / (4 * MiB)));
    expect(d.bandwidth.download.admitted).toBe(SIZE);
  });

  it("charges a ranged request's prefetch to proxy.prefetchBandwidthLimit and a whole pull to download.bandwidthLimit", async () => {
    const config = testDaemonConfig({
      name: "bw-proxy",
      schedulers: [],
      overrides: { proxy: { server: { ip: "127.0.0.1", port: 0 }, registryMirror: { addr: reg.url }, prefetchBandwidthLimit: "64MiB" } },
    });
    const d = await startDaemon(config, silentLogger());
    daemons.push(d);
    expect(d.bandwidth.limits.prefetch).toBe(64 * MiB);
    const layer = blobContent(SIZE, 51);
    const digest = reg.add("team/app", { content: layer });
    const r = await get(d.proxyPort, `/v2/team/app/blobs/${digest}`, { range: "bytes=0-99", "x-dragonfly-prefetch": "true" });
    expect(r.status).toBe(206);
    expect(r.body.equals(layer.subarray(0, 100))).toBe(true);
    // The whole blob lands (the prefetch goes on after the range was answered).
    await expect.poll(() => d.bandwidth.prefetch.admitted, { timeout: 20_000, interval: 50 }).toBe(SIZE);
    expect(d.bandwidth.download.admitted).toBe(0);

    const whole = blobContent(SIZE, 52);
    const wholeDigest = reg.add("team/app", { content: whole });
    const w = await get(d.proxyPort, `/v2/team/app/blobs/${wholeDigest}`);
    expect(w.body.equals(whole)).toBe(true);
    expect(d.bandwidth.download.admitted).toBe(SIZE);
    expect(d.bandwidth.prefetch.admitted).toBe(SIZE);
  });
});
