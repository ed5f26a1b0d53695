// The background scrub (issue 21): cached pieces are re-read and checked against the digests
// recorded when they landed. A piece whose bytes rotted on disk after it was verified is found,
// counted, no longer served to children, no longer a cache hit, and the next download fetches
// that piece again, so the output is the origin's bytes.
import { afterEach, describe, expect, it } from "vitest";
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { isNativeError, openTaskStore } from "../../src/native/index.js";
import { makeContent, startOrigin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, metricValue, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
const running: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close().catch(() => undefined);
  cleanupTempDirs();
});

describe("the cache scrub", () => {
  it("finds a piece that rotted on disk, stops serving it, and the next download heals it", async () => {
    const origin = await startOrigin(makeContent(16 * MiB, 7));
    running.push(origin);
    const scheduler = await startTestScheduler();
    running.push(scheduler);
    const daemon = await startTestDaemon({ name: "scrubbed", schedulers: [`127.0.0.1:${scheduler.grpcPort}`] });
    running.push(daemon);
    await downloadVia(daemon.socketPath, { url: origin.url(), outputPath: join(tempDir("out-first"), "file") });
    const task = daemon.storage.list()[0]!;
    const count = task.meta.pieceCount;
    expect(count).toBeGreaterThan(1);

    // A clean cache: every piece read back and found whole.
    const clean = await daemon.scrub();
    expect(clean).toMatchObject({ tasks: 1, pieces: count, bytes: task.meta.contentLength, corrupt: [] });
    expect(await metricValue(daemon.metricsPort, "dragonfly_client_scrub_piece_total", 'result="ok"')).toBe(count);

    // One byte of piece 1 rots, behind the store's back.
    const rotten = task.piece(1)!;
    const fd = openSync(task.contentPath, "r+");
    writeSync(fd, Buffer.from([0x5a ^ origin.content[rotten.offset + 100]!]), 0, 1, rotten.offset + 100);
    closeSync(fd);

    const found = await daemon.scrub();
    expect(found.corrupt).toEqual([`${task.id}:1`]);
    expect(await metricValue(daemon.metricsPort, "dragonfly_client_scrub_piece_total", 'result="corrupt"')).toBe(1);
    expect(task.finishedCount()).toBe(count - 1);
    expect(task.piece(1)).toBeUndefined();

    // Its piece server no longer hands the rotten piece to a child; the others still go.
    const childDir = tempDir("child-store");
    const child = openTaskStore({ dataDir: childDir, taskId: task.id, contentLength: task.meta.contentLength, pieceLength: task.meta.pieceLength });
    const addr = `127.0.0.1:${daemon.piecePort}`;
    await expect(child.fetchPiece({ addr, number: 1 })).rejects.toSatisfy((e: unknown) => isNativeError(e) && /refused piece 1: .* is not finished/.test(e.message));
    expect((await child.fetchPiece({ addr, number: 0 })).number).toBe(0);

    // No longer a cache hit: the next download fetches piece 1 again and writes the origin's bytes.
    const out = join(tempDir("out-again"), "file");
    await downloadVia(daemon.socketPath, { url: origin.url(), outputPath: out });
    expect(sha256File(out)).toBe(origin.sha256);
    expect(task.finishedCount()).toBe(count);
    expect((await daemon.scrub()).corrupt).toEqual([]);
  });

  it("is off with rateLimit 0", async () => {
    const dir = tempDir("daemon-off");
    const origin = await startOrigin(makeContent(4 * MiB, 8));
    running.push(origin);
    const daemon = await startTestDaemon({
      name: "off",
      schedulers: [],
      dir,
      overrides: { storage: { dir, keep: true, server: { ip: "127.0.0.1", tcpPort: 0, quicPort: 0 }, scrub: { rateLimit: "0" } } },
    });
    running.push(daemon);
    await downloadVia(daemon.socketPath, { url: origin.url(), outputPath: join(tempDir("out-off"), "file") });
    expect(await daemon.scrub()).toEqual({ tasks: 0, pieces: 0, bytes: 0, corrupt: [] });
  });
});
