// Digests on cache hits (issue 20): a download that names a digest is checked even when the
// daemon already holds the task, so a wrong digest never exits 0 and writes nothing; a cached
// task whose bytes rotted is dropped and fetched again rather than served.
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";

describe("digests on cache hits", () => {
  let origin: Origin;
  let daemon: DaemonHandle;
  const out = tempDir("digest-out");

  beforeAll(async () => {
    origin = await startOrigin(makeContent(9 * 1024 * 1024, 7));
    // No scheduler: every download goes back to source, and a second one is a plain cache hit.
    daemon = await startTestDaemon({ name: "digest", schedulers: [] });
  });

  afterAll(async () => {
    await daemon?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  it("a wrong --digest on a cache hit fails and writes no output; the right one is served from the cache", async () => {
    const url = origin.url("/file.bin?case=wrong");
    const first = await downloadVia(daemon.socketPath, { url, outputPath: join(out, "a.bin") });
    expect(sha256File(join(out, "a.bin"))).toBe(origin.sha256);
    const served = origin.bytesServed;

    const wrong = `sha256:${"0".repeat(64)}`;
    await expect(downloadVia(daemon.socketPath, { url, outputPath: join(out, "b.bin"), digest: wrong })).rejects.toThrow(/digest mismatch/);
    expect(existsSync(join(out, "b.bin"))).toBe(false);
    expect(readdirSync(out).filter((f) => f.startsWith("b.bin"))).toEqual([]);

    // The right digest: checked by reading once, then recorded.
    const right = await downloadVia(daemon.socketPath, { url, outputPath: join(out, "c.bin"), digest: `sha256:${origin.sha256}` });
    expect(right.taskId).toBe(first.taskId);
    expect(sha256File(join(out, "c.bin"))).toBe(origin.sha256);
    expect(daemon.storage.get(first.taskId)?.meta.digest).toBe(`sha256:${origin.sha256}`);
    // The wrong digest evicted the cached task once, so the origin served it again once.
    expect(origin.bytesServed - served).toBeGreaterThanOrEqual(origin.content.length);
    expect(origin.bytesServed - served).toBeLessThanOrEqual(2.1 * origin.content.length);
  });

  it("a cached task whose bytes changed on disk is dropped and downloaded again when a digest is asked for", async () => {
    const url = origin.url("/file.bin?case=rot");
    const first = await downloadVia(daemon.socketPath, { url, outputPath: join(out, "r1.bin") });
    const task = daemon.storage.get(first.taskId);
    expect(task).toBeDefined();
    // Rot the first bytes of the content under the store, as a failing disk would.
    writeFileSync(task?.contentPath as string, Buffer.alloc(4096, 0xee), { flag: "r+" });

    const served = origin.bytesServed;
    await downloadVia(daemon.socketPath, { url, outputPath: join(out, "r2.bin"), digest: `sha256:${origin.sha256}` });
    expect(sha256File(join(out, "r2.bin"))).toBe(origin.sha256);
    expect(origin.bytesServed - served).toBeGreaterThanOrEqual(origin.content.length);
  });
});
