// Dragonfly's client metrics move by what really happened: a seed peer reads a file from the
// origin, a peer downloads it from the seed peer, then again from its own store, then a file
// the origin does not have; last, its proxy turns requests away over its rate limit. Each
// daemon's /metrics is scraped after each step.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "node:http";
import { join } from "node:path";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

// Over one minimum piece (4 MiB), so it goes through the scheduler; size level 5 (16–32 MiB).
const SIZE = 20 * 1024 * 1024;
const LEVEL = "5";
// downloadVia asks for a standard task (TaskType 0) at priority 6.
const TASK = 'type="0",tag="",app="",priority="6"';

/** Sum of the samples of `name` whose labels include every one of `labels` (`k="v"` pairs). */
async function sample(d: DaemonHandle, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`)).text();
  const wanted = labels ? labels.split(",") : [];
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Set((m[2] ?? "").split(","));
    if (wanted.every((l) => have.has(l))) sum += Number(m[3]);
  }
  return sum;
}

describe("dfdaemon's Dragonfly client metrics", () => {
  let origin: Origin;
  let scheduler: SchedulerHandle;
  let seed: DaemonHandle;
  let peer: DaemonHandle;
  const out = tempDir("metrics-out");

  beforeAll(async () => {
    origin = await startOrigin(makeContent(SIZE, 11));
    scheduler = await startTestScheduler();
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    seed = await startTestDaemon({ name: "metrics-seed", schedulers: [addr], seed: true });
    // A proxy of one request a second, for the rate-limited counter.
    peer = await startTestDaemon({ name: "metrics-peer", schedulers: [addr], overrides: { proxy: { server: { ip: "127.0.0.1", port: 0, requestRateLimit: 1 } } } });
  });

  afterAll(async () => {
    await peer?.close();
    await seed?.close();
    await scheduler?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  it("counts the seed peer's back-to-source download: task, bytes and each origin request", async () => {
    const { pieces } = await downloadVia(seed.socketPath, { url: origin.url(), outputPath: join(out, "seed") });
    expect(sha256File(join(out, "seed"))).toBe(origin.sha256);
    expect(pieces).toBeGreaterThan(1);

    expect(await sample(seed, "dragonfly_client_download_task_total", TASK)).toBe(1);
    expect(await sample(seed, "dragonfly_client_download_task_failure_total")).toBe(0);
    expect(await sample(seed, "dragonfly_client_concurrent_download_task_total")).toBe(0);
    expect(await sample(seed, "dragonfly_client_download_task_duration_milliseconds_count", `task_type="0",task_size_level="${LEVEL}"`)).toBe(1);
    expect(await sample(seed, "dragonfly_client_download_traffic", 'type="BACK_TO_SOURCE"')).toBe(SIZE);
    expect(await sample(seed, "dragonfly_client_download_traffic", 'type="REMOTE_PEER"')).toBe(0);
    expect(await sample(seed, "dragonfly_client_download_piece_duration_milliseconds_count", 'type="BACK_TO_SOURCE"')).toBe(pieces);
    // Every request the origin answered is one backend request: a HEAD (the stat), then GETs.
    expect(await sample(seed, "dragonfly_client_backend_request_total", 'scheme="http",method="HEAD"')).toBe(1);
    expect(await sample(seed, "dragonfly_client_backend_request_total", 'scheme="http"')).toBe(origin.requests);
    expect(await sample(seed, "dragonfly_client_backend_request_total", 'method="GET"')).toBeGreaterThanOrEqual(1);
    expect(await sample(seed, "dragonfly_client_backend_request_failure_total")).toBe(0);
    expect(await sample(seed, "dragonfly_client_backend_request_duration_milliseconds_count", 'method="HEAD"')).toBe(1);
    expect(await sample(seed, "dragonfly_client_upload_traffic")).toBe(0);
  });

  it("counts the peer's download from the seed peer as remote-peer traffic, and the seed peer's upload", async () => {
    const requests = origin.requests;
    const { pieces } = await downloadVia(peer.socketPath, { url: origin.url(), outputPath: join(out, "peer") });
    expect(sha256File(join(out, "peer"))).toBe(origin.sha256);

    expect(await sample(peer, "dragonfly_client_download_task_total", TASK)).toBe(1);
    expect(await sample(peer, "dragonfly_client_download_traffic", 'type="REMOTE_PEER"')).toBe(SIZE);
    expect(await sample(peer, "dragonfly_client_download_traffic", 'type="BACK_TO_SOURCE"')).toBe(0);
    expect(await sample(peer, "dragonfly_client_download_piece_duration_milliseconds_count", 'type="REMOTE_PEER"')).toBe(pieces);
    expect(await sample(peer, "dragonfly_client_download_piece_duration_milliseconds_count", 'type="BACK_TO_SOURCE"')).toBe(0);
    // The peer asked the origin only for its stat, as Dragonfly's clients do.
    expect(origin.requests - requests).toBe(1);
    expect(await sample(peer, "dragonfly_client_backend_request_total", 'scheme="http",method="HEAD"')).toBe(1);
    expect(await sample(peer, "dragonfly_client_backend_request_total", 'method="GET"')).toBe(0);
    expect(await sample(seed, "dragonfly_client_upload_traffic")).toBe(SIZE);
    expect(await sample(peer, "dragonfly_client_upload_traffic")).toBe(0);
    expect(await sample(peer, "dragonfly_client_download_task_duration_milliseconds_count", `task_size_level="${LEVEL}"`)).toBe(1);
  });

  it("counts a download answered from local storage as local-peer traffic, without the origin", async () => {
    const requests = origin.requests;
    await downloadVia(peer.socketPath, { url: origin.url(), outputPath: join(out, "again") });
    expect(sha256File(join(out, "again"))).toBe(origin.sha256);
    expect(origin.requests).toBe(requests);
    expect(await sample(peer, "dragonfly_client_download_task_total", TASK)).toBe(2);
    expect(await sample(peer, "dragonfly_client_download_traffic", 'type="LOCAL_PEER"')).toBe(SIZE);
    expect(await sample(peer, "dragonfly_client_download_traffic", 'type="REMOTE_PEER"')).toBe(SIZE);
    expect(await sample(peer, "dragonfly_client_download_task_duration_milliseconds_count")).toBe(2);
  });

  it("counts a failed download and its failed origin request", async () => {
    await expect(downloadVia(peer.socketPath, { url: origin.url("/missing.bin"), outputPath: join(out, "missing") })).rejects.toThrow(/404/);
    expect(await sample(peer, "dragonfly_client_download_task_total", TASK)).toBe(3);
    expect(await sample(peer, "dragonfly_client_download_task_failure_total", TASK)).toBe(1);
    expect(await sample(peer, "dragonfly_client_concurrent_download_task_total")).toBe(0);
    expect(await sample(peer, "dragonfly_client_backend_request_failure_total", 'scheme="http",method="HEAD"')).toBe(1);
    // A failed task observes no duration.
    expect(await sample(peer, "dragonfly_client_download_task_duration_milliseconds_count")).toBe(2);
  });

  it("counts the proxy's requests and those it turned away over proxy.server.requestRateLimit", async () => {
    const through = () =>
      new Promise<number>((resolve, reject) => {
        const r = request({ host: "127.0.0.1", port: peer.proxyPort, path: origin.url("/missing.bin") }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        r.on("error", reject);
        r.end();
      });
    const statuses = await Promise.all(Array.from({ length: 10 }, through));
    const limited = statuses.filter((s) => s === 429).length;
    // One token a second: ten requests at once cannot all pass.
    expect(limited).toBeGreaterThanOrEqual(1);
    // Absolute-form http URLs: counted under scheme "http", method "GET", as Dragonfly does.
    expect(await sample(peer, "dragonfly_client_proxy_request_total", 'scheme="http",method="GET"')).toBe(10);
    expect(await sample(peer, "dragonfly_client_proxy_request_rate_limited_total")).toBe(limited);
    expect(await sample(peer, "dragonfly_client_proxy_request_refused_total", 'reason="rate_limit"')).toBe(limited);
  });
});
