// Storage GC: tasks idle past their TTL go; over the high watermark the least recently used
// tasks go until we are under the low one; running downloads are never evicted.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { silentLogger } from "../../src/common/logger.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { runGc } from "../../src/daemon/gc.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, startTestDaemon, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
let origin: Origin;
let daemon: DaemonHandle;

beforeAll(async () => {
  origin = await startOrigin(makeContent(6 * MiB, 4));
  daemon = await startTestDaemon({ name: "gc", schedulers: [] });
});

afterAll(async () => {
  await daemon.close();
  await origin.close();
  cleanupTempDirs();
});

async function fetchTask(q: string): Promise<string> {
  return (await downloadVia(daemon.socketPath, { url: origin.url(`/file.bin?${q}`), outputPath: join(tempDir("gc-out"), "f") })).taskId;
}

describe("dfdaemon GC", () => {
  it("evicts least recently used tasks over the high watermark down to the low one", async () => {
    const older = await fetchTask("a=1");
    await new Promise((r) => setTimeout(r, 20));
    const newer = await fetchTask("a=2");
    const olderDir = join(daemon.storage.get(older)!.contentPath, "..");
    // 12 MiB held against a 10 MiB capacity: over 80 %, so evict down to 60 % (6 MiB).
    await runGc(daemon.storage, daemon.tasks, { taskTtlMs: 3_600_000, diskThresholdBytes: 10 * MiB, highPercent: 80, lowPercent: 60 }, silentLogger());
    expect(daemon.storage.get(older)).toBeUndefined();
    expect(existsSync(olderDir)).toBe(false);
    expect(daemon.storage.get(newer)).toBeDefined();
  });

  it("keeps everything under the high watermark", async () => {
    const id = await fetchTask("b=1");
    await runGc(daemon.storage, daemon.tasks, { taskTtlMs: 3_600_000, diskThresholdBytes: 100 * MiB, highPercent: 80, lowPercent: 60 }, silentLogger());
    expect(daemon.storage.get(id)).toBeDefined();
  });

  it("removes tasks idle past their TTL", async () => {
    const id = await fetchTask("c=1");
    const policy = { taskTtlMs: 60_000, diskThresholdBytes: 0, highPercent: 80, lowPercent: 60 };
    await runGc(daemon.storage, daemon.tasks, policy, silentLogger(), undefined, Date.now());
    expect(daemon.storage.get(id)).toBeDefined();
    await runGc(daemon.storage, daemon.tasks, policy, silentLogger(), undefined, Date.now() + 61_000);
    expect(daemon.storage.get(id)).toBeUndefined();
  });
});
