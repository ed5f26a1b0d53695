// Disk pressure and failing disks (issue #20). On a small tmpfs as the data directory: a
// download that does not fit evicts the least recently used completed tasks (never one a child
// is downloading from us) and succeeds; a task larger than the whole disk fails naming the data
// directory and the bytes it needs, and leaves no directory. On a FUSE layer that fails chosen
// writes with EIO (this sandbox has no device-mapper): a piece whose write failed is fetched
// again, and a device that keeps failing one task's writes fails it clearly, leaving nothing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { deleteTaskStore, openTaskStore } from "../../src/native/index.js";
import { fuseAvailable, mountFaultyFs, type FaultyFs } from "../helpers/fuse.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const MiB = 1024 * 1024;
const PIECE = 4 * MiB;
const isRoot = process.getuid?.() === 0;
// These need root (mount) and /dev/fuse; a machine without them fails here, loudly, rather than
// skipping the only tests of a full disk and a failing one (CI runs as root).
const NEEDS = "needs root to mount a tmpfs and a FUSE layer (/dev/fuse)";

/** Task directories in a daemon's disk tier. */
function taskDirs(storageDir: string): string[] {
  const root = join(storageDir, "content", "tasks");
  return existsSync(root) ? readdirSync(root).sort() : [];
}

describe("dfdaemon on a full data directory (tmpfs of 40 MiB)", () => {
  it("runs where it can mount", () => expect(isRoot, NEEDS).toBe(true));

  let disk: string;
  let mounted = false;
  let daemon: DaemonHandle | undefined;
  const origins: Origin[] = [];
  let small: Origin;
  let medium: Origin;
  let huge: Origin;

  beforeAll(async () => {
    disk = tempDir("disk-tmpfs");
    const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=40m", "tmpfs", disk], { encoding: "utf8" });
    if (m.status !== 0) throw new Error(`mount -t tmpfs failed: ${m.stderr}`);
    mounted = true;
    small = await startOrigin(makeContent(10 * MiB, 21));
    medium = await startOrigin(makeContent(16 * MiB, 22));
    huge = await startOrigin(makeContent(64 * MiB, 23));
    origins.push(small, medium, huge);
    daemon = await startTestDaemon({ name: "disk-full", schedulers: [], dir: disk });
  });

  afterAll(async () => {
    await daemon?.close();
    for (const o of origins) await o.close();
    if (mounted && spawnSync("umount", [disk]).status !== 0) spawnSync("umount", ["-l", disk]);
    cleanupTempDirs();
  });

  async function fetchTask(origin: Origin, q: string): Promise<{ taskId: string; out: string }> {
    const out = join(tempDir("disk-out"), "file");
    const { taskId } = await downloadVia(daemon!.socketPath, { url: origin.url(`/file.bin?${q}`), outputPath: out });
    return { taskId, out };
  }

  it("evicts the least recently used completed tasks to fit a download, never one a child is downloading", async () => {
    const d = daemon!;
    // 3 × 10 MiB completed tasks: 30 of the 40 MiB, oldest first.
    const a = await fetchTask(small, "t=a");
    await new Promise((r) => setTimeout(r, 20));
    const b = await fetchTask(small, "t=b");
    await new Promise((r) => setTimeout(r, 20));
    const c = await fetchTask(small, "t=c");
    expect(taskDirs(disk)).toEqual([a.taskId, b.taskId, c.taskId].sort());

    // A child pulls a piece of the oldest task from our piece server: that task is in use.
    const scratch = tempDir("disk-child");
    const child = openTaskStore({ dataDir: scratch, taskId: a.taskId, contentLength: 10 * MiB, pieceLength: PIECE });
    await child.fetchPiece({ addr: `127.0.0.1:${d.piecePort}`, number: 0 });
    deleteTaskStore(scratch, a.taskId);
    await until(() => d.tasks.isInUse(a.taskId), "the uploaded task to count as in use", 5000);

    // 16 MiB more does not fit in the ~10 MiB left: one 10 MiB task has to go, and it is
    // the least recently used one that nobody is downloading from us (b, not a).
    const big = await fetchTask(medium, "t=d");
    expect(sha256File(big.out)).toBe(medium.sha256);
    expect(d.storage.get(a.taskId)).toBeDefined();
    expect(d.storage.get(b.taskId)).toBeUndefined();
    expect(d.storage.get(c.taskId)).toBeDefined();
    expect(taskDirs(disk)).toEqual([a.taskId, c.taskId, big.taskId].sort());
  });

  it("fails a task larger than the whole disk naming the data directory and the bytes, and leaves no directory", async () => {
    const before = taskDirs(disk);
    const failed = fetchTask(huge, "t=e");
    await expect(failed).rejects.toThrow(new RegExp(`no space left in ${join(disk, "content", "tasks")} for task \\w+: it needs ${64 * MiB + MiB} bytes`));
    // Nothing was evicted for a task that could never fit, and it left no directory behind.
    expect(taskDirs(disk)).toEqual(before);
  });

  it("fails the next such download the same clean way (no empty task directory is left to block it)", async () => {
    const before = taskDirs(disk);
    await expect(fetchTask(huge, "t=f")).rejects.toThrow(/no space left in/);
    expect(taskDirs(disk)).toEqual(before);
    // The disk still serves a download that fits.
    const again = await fetchTask(small, "t=g");
    expect(sha256File(again.out)).toBe(small.sha256);
  });
});

describe("dfdaemon on a device that fails piece writes with EIO (FUSE)", () => {
  it("runs where it can mount", () => expect(fuseAvailable(), NEEDS).toBe(true));

  let fs: FaultyFs | undefined;
  let daemon: DaemonHandle | undefined;
  let origin: Origin;
  let mnt: string;
  const size = 24 * MiB;

  beforeAll(async () => {
    mnt = tempDir("eio-mnt");
    fs = await mountFaultyFs(tempDir("eio-backing"), mnt);
    origin = await startOrigin(makeContent(size, 31));
    daemon = await startTestDaemon({
      name: "disk-eio",
      schedulers: [],
      overrides: { storage: { dir: mnt, keep: true, server: { ip: "127.0.0.1", tcpPort: 0 } } },
    });
  });

  afterAll(async () => {
    await daemon?.close();
    await origin?.close();
    await fs?.close();
    cleanupTempDirs();
  });

  it("fetches a piece whose write failed with EIO again and produces the right file", async () => {
    await fs!.failWrites({ name: "content", start: 2 * PIECE, end: 3 * PIECE, times: 1 });
    const served = origin.bytesServed;
    const out = join(tempDir("eio-out"), "file");
    const { taskId } = await downloadVia(daemon!.socketPath, { url: origin.url("/file.bin?e=1"), outputPath: out });
    expect(sha256File(out)).toBe(origin.sha256);
    const stats = await fs!.stats();
    expect(stats.injected).toBe(1);
    expect(stats.rewrites).toBeGreaterThan(0);
    // Piece 2 came from the origin twice, every other piece once (plus the stat's probe byte).
    expect(origin.bytesServed - served).toBeGreaterThanOrEqual(size + PIECE);
    expect(origin.bytesServed - served).toBeLessThan(size + 2 * PIECE);
    expect(daemon!.storage.get(taskId)?.meta.state).toBe("succeeded");
  });

  it("fails a task whose writes keep failing with EIO, clearly, and leaves no task directory", async () => {
    await fs!.failWrites({ name: "content", start: PIECE, end: 2 * PIECE, times: 1000 });
    const before = taskDirs(mnt);
    const failed = downloadVia(daemon!.socketPath, { url: origin.url("/file.bin?e=2"), outputPath: join(tempDir("eio-out"), "file") });
    await expect(failed).rejects.toThrow(/storage device under .* failed 3 piece writes with an I\/O error \(EIO\)/);
    expect((await fs!.stats()).injected).toBe(3);
    expect(taskDirs(mnt)).toEqual(before);
  });
});
