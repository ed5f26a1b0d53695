// A finished task written with O_DIRECT is read back into the page cache for its children
// (storage.warmLimit, issue 19): a Dragonfly child pulling from one of our parents otherwise
// waits on the disk for every piece, where Dragonfly's own parent serves from memory. The
// kernel's own count of resident pages (fincore, util-linux) is the witness; a task above the
// limit, and a daemon with the limit at 0, are left to the disk.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
const SIZE = 48 * MiB + 123;

/** Bytes of `path` the page cache holds now. */
function resident(path: string): number {
  return Number(execFileSync("fincore", ["--bytes", "--noheadings", "--output", "RES", path], { encoding: "utf8" }).trim());
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (cond()) return true;
  return cond();
}

describe("storage.warmLimit", () => {
  let origin: Origin;
  let scheduler: SchedulerHandle;
  const daemons: DaemonHandle[] = [];
  let out: string;

  beforeAll(async () => {
    origin = await startOrigin(makeContent(SIZE, 19));
    scheduler = await startTestScheduler();
    out = tempDir("warm-out");
  });

  afterAll(async () => {
    for (const d of daemons) await d.close();
    await scheduler?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  /** Downloads into a daemon with this limit; the output is the task file hard-linked, so it is read only after the page cache was looked at. */
  async function download(warmLimit: string, name: string): Promise<{ path: string; ioMode: string; output: string }> {
    const dir = tempDir(`daemon-${name}`);
    // The overrides replace the helper's storage section whole: its test settings come along.
    const storage = { dir, keep: true, server: { ip: "127.0.0.1", tcpPort: 0, quicPort: 0 }, warmLimit };
    const d = await startTestDaemon({ name, dir, schedulers: [`127.0.0.1:${scheduler.grpcPort}`], overrides: { storage } });
    daemons.push(d);
    const url = origin.url(`/file.bin?daemon=${name}`);
    await downloadVia(d.socketPath, { url, outputPath: join(out, name) });
    const task = d.storage.list().find((t) => t.meta.url === url);
    if (!task) throw new Error(`no task for ${url}`);
    return { path: task.contentPath, ioMode: task.ioMode, output: join(out, name) };
  }

  it("reads a finished O_DIRECT task within the limit into the page cache", async () => {
    const { path, ioMode, output } = await download("1GiB", "warm");
    // The premise: this filesystem takes O_DIRECT, so nothing else cached the writes.
    expect(ioMode).toBe("direct");
    expect(await until(() => resident(path) >= SIZE, 20_000)).toBe(true);
    expect(sha256File(output)).toBe(origin.sha256);
  });

  it("leaves a task above the limit, and every task with the limit at 0, to the disk", async () => {
    for (const [limit, name] of [["16MiB", "above"], ["0", "off"]] as const) {
      const { path, ioMode, output } = await download(limit, name);
      expect(ioMode).toBe("direct");
      // What O_DIRECT left behind (the unaligned last piece) is far from the whole task, and stays so.
      await new Promise((r) => setTimeout(r, 500));
      expect(resident(path)).toBeLessThan(SIZE / 2);
      expect(sha256File(output)).toBe(origin.sha256);
    }
  });
});
