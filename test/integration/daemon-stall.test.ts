// A parent that stops mid-download (SIGSTOP: its kernel keeps every connection open and
// acknowledges our requests, but nothing answers) must cost a child seconds, not
// download.pieceTimeout: its piece goes to another holder once it is silent past the deadline
// measured from its speed, and the second stall drops it for the task and tells the scheduler.
// The parent runs as a child process so that it can really be stopped; the scheduler, the
// seed peer and the downloading child run in this process.
import { afterEach, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { makeContent, startOrigin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, spawnDaemonProcess, startTestDaemon, startTestScheduler, tempDir, writeDaemonConfigFile } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const MiB = 1024 * 1024;
const running: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close().catch(() => undefined);
  cleanupTempDirs();
});

/** The parent: a dfdaemon in a process of its own, so it can be stopped. */
function spawnParent(scheduler: string, pieceTimeout: string): { proc: ChildProcess; socket: string } {
  const { config, socket } = writeDaemonConfigFile(tempDir("stall-parent"), "stall-parent", {
    download: { pieceTimeout },
    // 8 MB/s: a 4 MiB piece takes half a second, so the child is mid-download when it stops.
    upload: { bandwidthLimit: "8MB" },
    scheduler: { addrs: [scheduler], announceInterval: "30s" },
    security: { allowedBackToSourceCIDRs: ["127.0.0.0/8"] },
  });
  return { proc: spawnDaemonProcess(config), socket };
}

describe("a stopped parent", () => {
  it("costs the child seconds, not the piece timeout: the piece goes to another holder and the parent is dropped and reported", async () => {
    const size = 64 * MiB;
    const origin = await startOrigin(makeContent(size, 23));
    running.push(origin);
    const scheduler = await startTestScheduler();
    running.push(scheduler);
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    // download.pieceTimeout 120 s everywhere: the behaviour before stall deadlines waited that long.
    const overrides = (dir: string) => ({ download: { server: { socketPath: join(dir, "dfdaemon.sock") }, collectedPieceTimeout: "10s", pieceTimeout: "120s" } });
    const seedDir = tempDir("stall-seed");
    const seed = await startTestDaemon({ name: "stall-seed", schedulers: [addr], seed: true, dir: seedDir, overrides: overrides(seedDir) });
    running.push(seed);

    const parent = spawnParent(addr, "120s");
    let stopped = false;
    running.push({
      close: async () => {
        if (parent.proc.exitCode !== null) return;
        const exited = new Promise((r) => parent.proc.once("exit", r));
        if (stopped) parent.proc.kill("SIGCONT");
        parent.proc.kill("SIGTERM");
        await exited;
      },
    });
    await until(() => existsSync(parent.socket), "the parent's socket", 60_000);
    // The parent holds the whole task (and the seed peer, which it was fetched through).
    await downloadVia(parent.socket, { url: origin.url(), outputPath: join(tempDir("stall-parent-out"), "file") });

    const childDir = tempDir("stall-child");
    const child: DaemonHandle = await startTestDaemon({ name: "stall-child", schedulers: [addr], dir: childDir, overrides: overrides(childDir) });
    running.push(child);
    const dropped: Array<{ parentId: string; hostId: string; reason: string }> = [];
    child.tasks.events.on("badParent", (e: { parentId: string; hostId: string; reason: string }) => dropped.push(e));
    const out = join(tempDir("stall-child-out"), "file");
    const download = downloadVia(child.socketPath, { url: origin.url(), outputPath: out });
    const fromParent = () => child.storage.list()[0]?.finished().filter((p) => p.parentId.startsWith("127.0.0.1-stall-parent-")).length ?? 0;
    await until(() => fromParent() >= 2, "the child's first pieces from the parent", 60_000);
    const frozenAt = Date.now();
    parent.proc.kill("SIGSTOP");
    stopped = true;
    const piecesBefore = fromParent();

    await download;
    const took = Date.now() - frozenAt;
    console.log(`child finished ${took} ms after the parent stopped (${piecesBefore} pieces from it before)`);
    expect(sha256File(out)).toBe(origin.sha256);
    // Two stall deadlines of a few seconds each, far below download.pieceTimeout (120 s).
    expect(took).toBeLessThan(30_000);
    // Dropped for the task as stalled, and the scheduler told (a temporary piece failure
    // counts against the parent's host and blocks it for the child).
    expect(dropped).toHaveLength(1);
    expect(dropped[0]?.reason).toBe("stalled");
    expect(dropped[0]?.parentId.startsWith("127.0.0.1-stall-parent-")).toBe(true);
    const parentPeer = scheduler.resource.peers.get(dropped[0]!.parentId);
    expect(parentPeer?.host.uploadFailedCount).toBeGreaterThanOrEqual(1);
    const childPeers = [...scheduler.resource.peers.values()].filter((p) => p.host.id === child.hostId);
    expect(childPeers.some((p) => p.blockParents.has(dropped[0]!.parentId))).toBe(true);
    // Nothing after the stop came from the stopped parent.
    expect(fromParent()).toBe(piecesBefore);

    parent.proc.kill("SIGCONT");
    stopped = false;
  }, 180_000);
});
