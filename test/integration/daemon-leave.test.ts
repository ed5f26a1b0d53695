// A parent that leaves while a child downloads from it, two ways. SIGTERM is a graceful leave:
// the daemon tells the scheduler (DeleteHost, Dragonfly's LeaveHost) and closes its servers,
// and the child moves to the seed peer at once. SIGKILL leaves nothing to tell: the child finds
// the parent's connections reset and its port refusing, and moves on likewise. Neither may cost
// the child a stall deadline or download.pieceTimeout; what proves it is that the child never
// counted the parent as stalled (no "parent stalled" line, no DF_STALLED or DF_TIMEOUT from
// it, no stalled-parent report), not a duration. The parent runs as a process of its own so
// that it can be signalled; the scheduler, the seed peer and the child run in this process.
import { afterEach, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createLogger } from "../../src/common/logger.js";
import { startDaemon, type DaemonHandle } from "../../src/daemon/daemon.js";
import { makeContent, startOrigin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, spawnDaemonProcess, startTestDaemon, startTestScheduler, tempDir, testDaemonConfig, writeDaemonConfigFile } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const running: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close().catch(() => undefined);
  cleanupTempDirs();
});

interface LogLine {
  level: number;
  msg: string;
  parent?: string;
  err?: string;
  [k: string]: unknown;
}

async function leaveWhileUploading(signal: "SIGTERM" | "SIGKILL") {
  const origin = await startOrigin(makeContent(SIZE, signal === "SIGTERM" ? 31 : 37));
  running.push(origin);
  const scheduler = await startTestScheduler();
  running.push(scheduler);
  const addr = `127.0.0.1:${scheduler.grpcPort}`;
  // download.pieceTimeout 120 s: a child that waited for it would not finish within the test.
  const timeouts = { collectedPieceTimeout: "10s", pieceTimeout: "120s" };
  const seedDir = tempDir("leave-seed");
  const seed = await startTestDaemon({ name: "leave-seed", schedulers: [addr], seed: true, dir: seedDir, overrides: { download: { server: { socketPath: join(seedDir, "dfdaemon.sock") }, ...timeouts } } });
  running.push(seed);

  const { config, socket } = writeDaemonConfigFile(tempDir("leave-parent"), "leave-parent", {
    download: timeouts,
    // 8 MB/s: a 4 MiB piece takes half a second, so the child is mid-download when it leaves.
    upload: { bandwidthLimit: "8MB" },
    scheduler: { addrs: [addr], announceInterval: "30s" },
    security: { allowedBackToSourceCIDRs: ["127.0.0.0/8"] },
  });
  const parent = spawnDaemonProcess(config);
  const exited = new Promise<NodeJS.Signals | number | null>((r) => parent.once("exit", (code, sig) => r(sig ?? code)));
  running.push({
    close: async () => {
      if (parent.exitCode !== null || parent.signalCode !== null) return;
      parent.kill("SIGKILL");
      await exited;
    },
  });
  await until(() => existsSync(socket), "the parent's socket", 60_000);
  // The parent holds the whole task (and the seed peer, which it was fetched through).
  await downloadVia(socket, { url: origin.url(), outputPath: join(tempDir("leave-parent-out"), "file") });
  const parentHost = [...scheduler.resource.hosts.values()].find((h) => h.hostname === "leave-parent");
  expect(parentHost, "the parent announced itself").toBeDefined();
  const parentHostId = parentHost!.id;

  // The child logs at debug level into memory, where every piece failure is recorded.
  const lines: LogLine[] = [];
  const log = createLogger({ component: "leave-child", level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  const child: DaemonHandle = await startDaemon(testDaemonConfig({ name: "leave-child", schedulers: [addr], overrides: { download: { server: { socketPath: join(tempDir("leave-child-sock"), "dfdaemon.sock") }, ...timeouts } } }), log);
  running.push(child);
  const badParents: Array<{ parentId: string; reason: string }> = [];
  child.tasks.events.on("badParent", (e: { parentId: string; reason: string }) => badParents.push(e));

  const out = join(tempDir("leave-child-out"), "file");
  let piecesDone = 0;
  let finished = false;
  const download = downloadVia(child.socketPath, { url: origin.url(), outputPath: out }, () => piecesDone++).finally(() => (finished = true));
  const isParent = (peerId: string) => peerId.startsWith("127.0.0.1-leave-parent-");
  const fromParent = () => child.storage.list()[0]?.finished().filter((p) => isParent(p.parentId)).length ?? 0;
  await until(() => fromParent() >= 2, "the child's first pieces from the parent", 60_000);

  // When the scheduler lets go of the parent's host, and how far the child was by then.
  let hostGoneWhileDownloading: boolean | undefined;
  const watch = setInterval(() => {
    if (hostGoneWhileDownloading === undefined && !scheduler.resource.hosts.has(parentHostId)) hostGoneWhileDownloading = !finished;
  }, 10);
  const leftAt = Date.now();
  const piecesBefore = fromParent();
  parent.kill(signal);
  let result: Awaited<typeof download>;
  try {
    result = await download;
  } finally {
    clearInterval(watch);
  }
  const took = Date.now() - leftAt;
  const how = await exited;
  console.log(`${signal}: child finished ${took} ms after the parent left (${piecesBefore} pieces from it before, ${fromParent()} in all, ${result.pieces} pieces)`);

  expect(sha256File(out)).toBe(origin.sha256);
  expect(result.contentLength).toBe(SIZE);
  expect(how).toBe(signal === "SIGTERM" ? 0 : "SIGKILL");
  // The parent was never counted as stalled or timed out: it was seen gone.
  const aboutParent = lines.filter((l) => typeof l.parent === "string" && isParent(l.parent));
  expect(aboutParent.filter((l) => l.msg === "parent stalled")).toEqual([]);
  expect(aboutParent.filter((l) => /DF_STALLED|DF_TIMEOUT|did not start answering|timed out/i.test(String(l.err ?? "")))).toEqual([]);
  expect(badParents.filter((b) => isParent(b.parentId) && b.reason === "stalled")).toEqual([]);
  return { scheduler, parentHostId, lines, aboutParent, hostGoneWhileDownloading, piecesBefore, pieces: result.pieces };
}

describe("a parent leaves while a child downloads from it", () => {
  it("SIGTERM (graceful leave): the scheduler drops the parent's host while the child downloads, and the child moves on without a stall", async () => {
    const r = await leaveWhileUploading("SIGTERM");
    // DeleteHost reached the scheduler before the child was done.
    expect(r.hostGoneWhileDownloading).toBe(true);
    expect(r.scheduler.resource.hosts.has(r.parentHostId)).toBe(false);
  }, 180_000);

  it("SIGKILL: the child sees the parent's connections fail and moves on without a stall", async () => {
    const r = await leaveWhileUploading("SIGKILL");
    // Nobody told the scheduler: the host stays until its announce interval lapses.
    expect(r.hostGoneWhileDownloading).toBeUndefined();
    console.log(r.aboutParent.filter((l) => l.err).map((l) => `${l.msg}: ${String(l.err)}`).slice(0, 5));
  }, 180_000);
});
