// An origin that does not tell the content length (#20 catalogue): a chunked body, or one that
// ends when the origin closes the connection, with no Content-Length and no Range support. The
// first peer reads it in one response, learns the length at EOF, checks the digest asked for,
// and only then holds a task, announced to the scheduler with its real length; a second peer
// then downloads it from the first, not from the origin. A wrong digest or an origin that dies
// mid-body fails cleanly: no output file, no task, no staged bytes.
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, runDfget, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
const SIZE = 21 * MiB + 4321; // 6 pieces of 4 MiB


const tasksOf = (d: DaemonHandle, url: string) => d.storage.list().filter((t) => t.meta.url === url);
/** Files under the daemon's staging directory (none once a download ended, whichever way). */
const staged = (d: DaemonHandle) => {
  const dir = d.storage.stagingDir("disk");
  return existsSync(dir) ? readdirSync(dir) : [];
};

describe("origin without a content length", () => {
  let origin: Origin;
  let scheduler: SchedulerHandle;
  let first: DaemonHandle;
  let second: DaemonHandle;
  let out: string;

  beforeAll(async () => {
    out = tempDir("unknown-length-out");
    origin = await startOrigin(makeContent(SIZE, 23));
    scheduler = await startTestScheduler();
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    // A short outage budget: the mid-body failure below retries for a few seconds, not a minute.
    first = await startTestDaemon({ name: "first", schedulers: [addr], overrides: { backend: { retryTimeout: "3s" } } });
    second = await startTestDaemon({ name: "second", schedulers: [addr] });
  });

  afterAll(async () => {
    await second?.close();
    await first?.close();
    await scheduler?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  for (const framing of ["chunked", "close"] as const) {
    it(`downloads a ${framing === "chunked" ? "chunked" : "close-delimited"} body whole, with the length learnt at EOF`, async () => {
      origin.framing = framing;
      const url = origin.url(`/file.bin?case=${framing}`);
      const served = origin.bytesServed;
      const r = await downloadVia(first.socketPath, { url, outputPath: join(out, framing) });
      expect(r.contentLength).toBe(SIZE);
      expect(sha256File(join(out, framing))).toBe(origin.sha256);
      const [task] = tasksOf(first, url);
      expect(task?.meta).toMatchObject({ contentLength: SIZE, pieceCount: 6, state: "succeeded" });
      expect(task?.meta.pin?.etag).toBe(origin.etag);
      // The stat's GET and the one that was read (the stat's may be cut short).
      expect(origin.bytesServed - served).toBeLessThanOrEqual(2 * SIZE);
      expect(staged(first)).toEqual([]);
    });
  }

  it("gives the second peer the task from the first one, the scheduler knowing its real length", async () => {
    origin.framing = "chunked";
    const url = origin.url("/file.bin?case=p2p");
    await downloadVia(first.socketPath, { url, outputPath: join(out, "p2p-first") });
    const requests = origin.requests;
    const r = await downloadVia(second.socketPath, { url, outputPath: join(out, "p2p-second") });
    expect(r.contentLength).toBe(SIZE);
    expect(sha256File(join(out, "p2p-second"))).toBe(origin.sha256);
    const pieces = tasksOf(second, url)[0]!.finished();
    expect(pieces).toHaveLength(6);
    expect(pieces.every((p) => p.parentId.startsWith("127.0.0.1-first-"))).toBe(true);
    // The second peer only stat'ed the origin (learning nothing), then took every byte from the first.
    expect(origin.requests - requests).toBe(1);
  });

  it("checks --digest on the bytes: equal passes, wrong fails with no output file and no task", async () => {
    origin.framing = "chunked";
    const good = origin.url("/file.bin?case=digest-good");
    const ok = await runDfget(first.socketPath, [good, "-O", join(out, "digest-good"), "--digest", `sha256:${origin.sha256}`]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(sha256File(join(out, "digest-good"))).toBe(origin.sha256);

    const bad = origin.url("/file.bin?case=digest-bad");
    const wrong = createHash("sha256").update("something else").digest("hex");
    const r = await runDfget(first.socketPath, [bad, "-O", join(out, "digest-bad"), "--digest", `sha256:${wrong}`]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("digest mismatch");
    expect(r.stderr).toContain(origin.sha256);
    expect(existsSync(join(out, "digest-bad"))).toBe(false);
    expect(tasksOf(first, bad)).toEqual([]);
    expect(staged(first)).toEqual([]);
  });

  it("fails cleanly when the origin dies mid-body, leaving nothing behind", async () => {
    origin.framing = "chunked";
    const url = origin.url("/file.bin?case=cut");
    try {
      // Every answer, the retries' too, breaks off after 5 MiB of a chunked body.
      origin.cutAfter = 5 * MiB;
      const e = await downloadVia(first.socketPath, { url, outputPath: join(out, "cut") }).catch((err: unknown) => err as Error);
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).message).toContain(url);
      expect((e as Error).message).toMatch(/broke off after \d+ bytes/);
    } finally {
      origin.cutAfter = undefined;
    }
    expect(existsSync(join(out, "cut"))).toBe(false);
    expect(tasksOf(first, url)).toEqual([]);
    expect(staged(first)).toEqual([]);
    // The origin back to normal: the same URL downloads.
    await downloadVia(first.socketPath, { url, outputPath: join(out, "cut") });
    expect(sha256File(join(out, "cut"))).toBe(origin.sha256);
  });
});
