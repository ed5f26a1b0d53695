// A parent that lies: it serves bytes other than the origin's, with the CRC of the bytes it
// serves in the vortex frame, so the frame's own check passes (issue 21). The receiver checks
// every piece against the digest the back-to-source peer (the seed) reported to the scheduler,
// drops the liar, tells the scheduler (DownloadPieceFailed with the liar's id), counts it, and
// takes the pieces from another holder.
import { afterEach, describe, expect, it } from "vitest";
import { closeSync, openSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { digest, isNativeError, openTaskStore } from "../../src/native/index.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, metricValue, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
const running: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close().catch(() => undefined);
  cleanupTempDirs();
});

/**
 * Rewrites every piece `d` holds with other bytes and records them as its own: its piece
 * server then sends the made-up bytes with their matching CRC, as a lying parent would.
 */
async function makeLiar(d: DaemonHandle): Promise<Map<number, Buffer>> {
  const task = d.storage.list()[0]!;
  // Opening the task's directory again returns the store the daemon serves from.
  const store = openTaskStore({ dataDir: dirname(dirname(task.contentPath)), taskId: task.id, contentLength: task.meta.contentLength, pieceLength: task.meta.pieceLength });
  const lies = new Map<number, Buffer>();
  for (const p of task.finished()) {
    const lie = Buffer.from(await store.readPiece(p.number));
    lie.write("made-up bytes", 1000);
    const fd = openSync(task.contentPath, "r+");
    writeSync(fd, lie, 0, lie.length, p.offset);
    closeSync(fd);
    // The stored piece no longer matches its record: the store unmarks it, and it is written
    // again with the lie, which records the lie's own CRC (and BLAKE3).
    await expect(store.verifyPiece(p.number)).rejects.toSatisfy((e: unknown) => isNativeError(e) && e.code === "DF_DIGEST_MISMATCH");
    await store.writePiece(p.number, lie);
    lies.set(p.number, lie);
  }
  return lies;
}

describe("a lying parent", () => {
  it("is detected by the origin's digest, blocked, reported, and the pieces come from another holder", async () => {
    const origin: Origin = await startOrigin(makeContent(32 * MiB, 21));
    running.push(origin);
    const scheduler: SchedulerHandle = await startTestScheduler();
    running.push(scheduler);
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    const seed = await startTestDaemon({ name: "seed", schedulers: [addr], seed: true });
    running.push(seed);
    const liar = await startTestDaemon({ name: "liar", schedulers: [addr] });
    running.push(liar);
    await downloadVia(liar.socketPath, { url: origin.url(), outputPath: join(tempDir("out-liar"), "file") });

    // The seed fetched the task from the origin and vouched for every piece with its BLAKE3.
    const taskId = liar.storage.list()[0]!.id;
    const vouched = scheduler.resource.tasks.get(taskId)!.pieces.list();
    expect(vouched.length).toBe(8);
    for (const p of vouched) {
      expect(p.digest).toBe(digest("blake3", origin.content.subarray(p.offset, p.offset + p.length)));
    }

    const lies = await makeLiar(liar);
    expect(lies.size).toBe(8);
    // What the liar's frames will carry: the CRC of the lie, not of the origin's bytes.
    for (const p of liar.storage.list()[0]!.finished()) {
      const truth = origin.content.subarray(p.offset, p.offset + p.length);
      expect(p.digest).toBe(digest("crc32", lies.get(p.number)!));
      expect(p.digest).not.toBe(digest("crc32", truth));
    }

    const child = await startTestDaemon({ name: "child", schedulers: [addr] });
    running.push(child);
    const bad: Array<{ hostId: string; parentId: string; reason: string }> = [];
    child.tasks.events.on("badParent", (e: { hostId: string; parentId: string; reason: string }) => bad.push(e));
    const out = join(tempDir("out-child"), "file");
    await downloadVia(child.socketPath, { url: origin.url(), outputPath: out });

    expect(sha256File(out)).toBe(origin.sha256);
    // Detected and dropped as corrupt...
    const liarPeer = bad.find((e) => e.hostId === liar.hostId);
    expect(liarPeer?.reason).toBe("corrupt");
    // ...told to the scheduler, which never offers the liar to the child again...
    const childPeer = [...scheduler.resource.peers.values()].find((p) => p.host.id === child.hostId)!;
    expect(childPeer.blockParents.has(liarPeer!.parentId)).toBe(true);
    // ...and counted.
    expect(await metricValue(child.metricsPort, "dragonfly_client_bad_parent_total", 'reason="corrupt"')).toBeGreaterThanOrEqual(1);
    // Every piece came from the honest holder (the seed): none from the liar, none from the
    // origin (those have no parent).
    const pieces = child.storage.list()[0]!.finished();
    expect(pieces).toHaveLength(8);
    expect(pieces.every((p) => p.parentId !== "" && p.parentId !== liarPeer!.parentId)).toBe(true);
  });
});
