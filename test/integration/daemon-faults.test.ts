// The download path under faults: a parent that disappears mid-transfer, a parent that serves
// corrupt bytes, and a daemon killed with SIGKILL half way through a download.
import { afterEach, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const MiB = 1024 * 1024;
const running: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close().catch(() => undefined);
  cleanupTempDirs();
});

async function swarm(size: number, seedOverrides: Record<string, unknown> = {}) {
  const origin: Origin = await startOrigin(makeContent(size, 11));
  running.push(origin);
  const scheduler: SchedulerHandle = await startTestScheduler();
  running.push(scheduler);
  const addr = `127.0.0.1:${scheduler.grpcPort}`;
  const seed = await startTestDaemon({ name: "seed", schedulers: [addr], seed: true, overrides: seedOverrides });
  running.push(seed);
  return { origin, scheduler, addr, seed };
}

describe("faults on the P2P path", () => {
  it("finishes from the origin when its only parent dies mid-download", async () => {
    const size = 64 * MiB;
    // The seed uploads slowly so that the child is still downloading when the seed goes away.
    const { origin, addr, seed } = await swarm(size, { upload: { server: { ip: "127.0.0.1", port: 0 }, bandwidthLimit: "12MB" } });
    const peer: DaemonHandle = await startTestDaemon({ name: "child", schedulers: [addr] });
    running.push(peer);
    const out = join(tempDir("out"), "file");
    const download = downloadVia(peer.socketPath, { url: origin.url(), outputPath: out });
    const fromParent = () => peer.storage.list()[0]?.finished().filter((p) => p.parentId !== "").length ?? 0;
    await until(() => fromParent() >= 2, "the child's first pieces from its parent", 60_000);
    await seed.close();
    await download;
    expect(sha256File(out)).toBe(origin.sha256);
    const pieces = peer.storage.list()[0]!.finished();
    expect(pieces.some((p) => p.parentId !== "")).toBe(true);
    expect(pieces.some((p) => p.parentId === "")).toBe(true);
  });

  it("detects a parent that serves corrupt pieces, blocks it and still produces a verified file", async () => {
    const size = 32 * MiB;
    const { origin, addr, seed } = await swarm(size);
    const a = await startTestDaemon({ name: "peer-a", schedulers: [addr] });
    running.push(a);
    await downloadVia(a.socketPath, { url: origin.url(), outputPath: join(tempDir("out-a"), "file") });
    await seed.close();
    // Rot piece bytes on disk; the records (and the crc32 the parent announces) stay as they were.
    const task = a.storage.list()[0]!;
    const fd = openSync(task.contentPath, "r+");
    for (const p of task.finished()) writeSync(fd, Buffer.from("rotten bytes"), 0, 12, p.offset + 100);
    closeSync(fd);

    const b = await startTestDaemon({ name: "peer-b", schedulers: [addr] });
    running.push(b);
    const bad: Array<{ hostId: string }> = [];
    b.tasks.events.on("badParent", (e: { hostId: string }) => bad.push(e));
    const out = join(tempDir("out-b"), "file");
    await downloadVia(b.socketPath, { url: origin.url(), outputPath: out });
    expect(sha256File(out)).toBe(origin.sha256);
    expect(bad.map((e) => e.hostId)).toContain(a.hostId);
    // Nothing from the corrupt parent was kept.
    expect(b.storage.list()[0]!.finished().every((p) => !p.parentId.startsWith("127.0.0.1-peer-a-"))).toBe(true);
  });
});

describe("dfdaemon killed with SIGKILL", () => {
  function spawnDaemon(config: string): ChildProcess {
    const bin = new URL("../../bin/dfdaemon.js", import.meta.url).pathname;
    return spawn(process.execPath, [bin, "--config", config, "--log-level", "error"], { stdio: ["ignore", "ignore", "inherit"] });
  }

  it("resumes after a restart without fetching the finished pieces again", async () => {
    const size = 48 * MiB;
    const pieceLength = 4 * MiB;
    const origin = await startOrigin(makeContent(size, 5));
    running.push(origin);
    origin.delayMs = 150;
    const dir = tempDir("resume");
    const socket = join(dir, "dfdaemon.sock");
    const config = join(dir, "dfdaemon.yaml");
    writeFileSync(
      config,
      stringify({
        host: { ip: "127.0.0.1", hostname: "resumer" },
        download: { server: { socketPath: socket }, concurrentPieceCount: 1 },
        upload: { server: { ip: "127.0.0.1", port: 0 } },
        storage: { dir, keep: true, server: { ip: "127.0.0.1", tcpPort: 0, quicPort: 0 } },
        health: { server: { ip: "127.0.0.1", port: 0 } },
        metrics: { server: { ip: "127.0.0.1", port: 0 } },
      }),
    );
    const out = join(tempDir("resume-out"), "file");

    let child = spawnDaemon(config);
    await until(() => existsSync(socket), "the daemon socket", 30_000);
    let pieces = 0;
    const first = downloadVia(socket, { url: origin.url(), outputPath: out, pieceLength }, () => pieces++).catch((e: unknown) => e);
    await until(() => pieces >= 6, "half of the pieces", 60_000);
    child.kill("SIGKILL");
    await first;
    expect(existsSync(out)).toBe(false);
    const servedBeforeRestart = origin.bytesServed;
    // SIGKILL leaves the socket file behind; its reappearance then tells the restart is up.
    rmSync(socket, { force: true });

    child = spawnDaemon(config);
    running.push({ close: () => Promise.resolve(void child.kill("SIGTERM")) });
    await until(() => existsSync(socket), "the restarted daemon socket", 30_000);
    await downloadVia(socket, { url: origin.url(), outputPath: out, pieceLength });
    expect(sha256File(out)).toBe(origin.sha256);
    // Only the pieces that had not finished were fetched again (one piece may have been in
    // flight at the kill, and the restart re-stats the origin with one byte).
    expect(origin.bytesServed - servedBeforeRestart).toBeLessThanOrEqual(size - 6 * pieceLength + pieceLength + 16);
    expect(servedBeforeRestart + (origin.bytesServed - servedBeforeRestart)).toBeLessThan(size + 2 * pieceLength);
  });
});
