// Every source offline for a while (#20 catalogue): the origin refuses connections mid-download
// (and the only parent is gone too) and comes back a few seconds later, within the download's
// timeout. The download resumes where it stopped and finishes with the right bytes, without
// fetching the pieces it has again. An origin that never comes back fails the download at its
// timeout (dfget --timeout) with an error that says so, and no output file.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, runDfget, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const MiB = 1024 * 1024;
const PIECE = 4 * MiB;
const running: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close().catch(() => undefined);
  cleanupTempDirs();
});


async function slowOrigin(size: number): Promise<Origin> {
  const origin = await startOrigin(makeContent(size, 31));
  running.push(origin);
  // Slow enough that the outage begins with most pieces still to fetch.
  origin.delayMs = 150;
  return origin;
}

const landed = (d: DaemonHandle) => d.storage.list()[0]?.finishedCount() ?? 0;

describe("all sources offline, then back within the download's timeout", () => {
  it("resumes from the origin where it stopped and finishes with the right bytes", async () => {
    const size = 40 * MiB;
    const origin = await slowOrigin(size);
    const daemon = await startTestDaemon({ name: "outage", schedulers: [], overrides: { download: { concurrentPieceCount: 2 } } });
    running.push(daemon);
    const out = join(tempDir("outage-out"), "file");
    const download = downloadVia(daemon.socketPath, { url: origin.url(), outputPath: out, pieceLength: PIECE });
    await until(() => landed(daemon) >= 2, "the first pieces", 60_000);
    await origin.goOffline();
    // Longer than the retries of one request (backend.maxRetries), and than the fixed ~15.5 s
    // of pauses the daemon allowed before backend.retryTimeout (60 s by default).
    await new Promise((r) => setTimeout(r, 18_000));
    await origin.comeBack();
    await download;
    expect(sha256File(out)).toBe(origin.sha256);
    // Pieces that landed before the outage were not fetched again; the ones cut off by it were
    // (at most the two in flight), plus the stat's byte.
    expect(origin.bytesServed).toBeLessThanOrEqual(size + 2 * PIECE + 1);
  });

  it("resumes from the origin when its only parent is gone too", async () => {
    const size = 40 * MiB;
    const origin = await slowOrigin(size);
    origin.delayMs = 0;
    const scheduler = await startTestScheduler();
    running.push(scheduler);
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    // The seed uploads slowly so that the child is still downloading when everything goes.
    const seed = await startTestDaemon({ name: "seed", schedulers: [addr], seed: true, overrides: { upload: { server: { ip: "127.0.0.1", port: 0 }, bandwidthLimit: "8MB" } } });
    running.push(seed);
    const child = await startTestDaemon({ name: "child", schedulers: [addr], overrides: { download: { concurrentPieceCount: 2 } } });
    running.push(child);
    const out = join(tempDir("outage-p2p-out"), "file");
    const download = downloadVia(child.socketPath, { url: origin.url(), outputPath: out, pieceLength: PIECE });
    const fromParent = () => child.storage.list()[0]?.finished().filter((p) => p.parentId !== "").length ?? 0;
    await until(() => fromParent() >= 2, "the child's first pieces from its parent", 60_000);
    await origin.goOffline();
    await seed.close();
    await new Promise((r) => setTimeout(r, 5000));
    await origin.comeBack();
    await download;
    expect(sha256File(out)).toBe(origin.sha256);
    const pieces = child.storage.list()[0]!.finished();
    expect(pieces.some((p) => p.parentId !== "")).toBe(true);
    expect(pieces.some((p) => p.parentId === "")).toBe(true);
  });

  it("fails at the download's timeout when the origin never comes back, with no output file", async () => {
    const size = 40 * MiB;
    const origin = await slowOrigin(size);
    const daemon = await startTestDaemon({ name: "gone", schedulers: [], overrides: { download: { concurrentPieceCount: 2 } } });
    running.push(daemon);
    const out = join(tempDir("gone-out"), "file");
    // The daemon's own bound (backend.retryTimeout, 60 s by default) is longer: the timeout ends it.
    const result = runDfget(daemon.socketPath, [origin.url(), "-O", out, "--piece-length", String(PIECE), "--timeout", "12s"]);
    await until(() => landed(daemon) >= 2, "the first pieces", 60_000);
    await origin.goOffline();
    const r = await result;
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(origin.url());
    expect(r.stderr).toContain("giving up before the download's timeout");
    expect(existsSync(out)).toBe(false);
    // Never reported as finished; the verified pieces stay for a resume (task/retention.ts).
    const task = daemon.storage.list()[0];
    expect(task === undefined || task.meta.state === "failed").toBe(true);
  });
});
