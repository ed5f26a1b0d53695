// A task GC removes gives its descriptors back at once. The native store's files were closed
// only when V8 collected every JS handle on it (the storage's, the native origin's of each
// back-to-source, each piece race's), and until then a deleted task's three files stayed open,
// pointed at /dev/null: the soak run (bench/soak.ts) found 120 such descriptors in an idle
// daemon after GC had removed 40 tasks.
import { readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { runGc } from "../../src/daemon/gc.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
let origin: Origin;
let daemon: DaemonHandle;

/** This process's descriptors on /dev/null and on files under a task directory. */
function storeFds(): { devNull: number; taskFiles: number } {
  let devNull = 0;
  let taskFiles = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    let target = "";
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target === "/dev/null") devNull++;
    else if (target.includes("/content/tasks/")) taskFiles++;
  }
  return { devNull, taskFiles };
}

beforeAll(async () => {
  origin = await startOrigin(makeContent(3 * MiB + 17, 9));
  daemon = await startTestDaemon({ name: "fd-release", schedulers: [] });
});

afterAll(async () => {
  await daemon.close();
  await origin.close();
  cleanupTempDirs();
});

describe("dfdaemon descriptors of deleted tasks", () => {
  it("are closed when GC removes the tasks, without waiting for V8 to collect their handles", async () => {
    const before = storeFds();
    const out = tempDir("fd-out");
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await downloadVia(daemon.socketPath, { url: origin.url(`/file.bin?fd=${i}`), outputPath: join(out, `f${i}`) });
      expect(sha256File(join(out, `f${i}`))).toBe(origin.sha256);
      ids.push(r.taskId);
    }
    expect(storeFds().taskFiles).toBeGreaterThanOrEqual(ids.length);
    // Every task idle past a TTL of one millisecond: the ordinary GC pass removes them all.
    await new Promise((r) => setTimeout(r, 5));
    await runGc(daemon.storage, daemon.tasks, { taskTtlMs: 1, diskThresholdBytes: 0, highPercent: 80, lowPercent: 60 }, silentLogger());
    for (const id of ids) expect(daemon.storage.get(id)).toBeUndefined();
    // In-flight native operations drop their references as they settle: a moment, not a GC.
    let now = storeFds();
    for (let i = 0; i < 40 && (now.devNull > before.devNull || now.taskFiles > before.taskFiles); i++) {
      await new Promise((r) => setTimeout(r, 50));
      now = storeFds();
    }
    expect(now).toEqual(before);
  });
});
