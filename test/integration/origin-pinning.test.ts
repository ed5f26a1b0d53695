// Content pinning (#20): an origin that changes during a download never yields a file mixed of
// two versions reported as success. A task is pinned to its first answer's ETag (else
// Last-Modified): every piece request carries it (If-Match / If-Unmodified-Since) and every
// answer is compared with it, so a change fails the download — dfget exits non-zero, leaves
// no file, and the task is dropped — or, with download.restartOnOriginChange, restarts it once
// with the new version. An origin without validators is read in one response. A peer that
// joins later takes the version its parents hold and never mixes it with the origin's new one.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
const SIZE = 18 * MiB + 12345; // 5 pieces of 4 MiB
const A = makeContent(SIZE, 41);
const B = makeContent(SIZE, 42);
const bin = new URL("../../bin/dfget.js", import.meta.url).pathname;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const fileSha = (path: string) => sha(readFileSync(path));

function dfget(socket: string, url: string, output: string): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, url, "-O", output, "-e", socket, "--no-progress"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    p.on("close", (status) => resolve({ status, stderr }));
  });
}

/**
 * Serves A from now on and switches to B when the `flip`-th request for content (after the
 * stat's one-byte GET) arrives; returns the number of requests served so far.
 */
function flipAt(origin: Origin, flip: number | undefined, validators: Origin["validators"], preconditions = true): number {
  origin.setContent(A);
  origin.validators = validators;
  origin.preconditions = preconditions;
  let content = 0;
  origin.beforeServe = (_n, req) => {
    if (req.headers.range !== "bytes=0-0" && ++content === flip) origin.setContent(B);
  };
  return origin.requests;
}

const tasksOf = (d: DaemonHandle, url: string) => d.storage.list().filter((t) => t.meta.url === url);

describe("origin pinning", () => {
  let origin: Origin;
  let daemon: DaemonHandle;
  let out: string;

  beforeAll(async () => {
    out = tempDir("pinning-out");
    origin = await startOrigin(A);
    daemon = await startTestDaemon({ name: "pin", schedulers: [] });
  });

  afterAll(async () => {
    await daemon?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  it("pins with requests already made: one per piece, each carrying If-Match", async () => {
    const base = flipAt(origin, undefined, "both");
    const url = origin.url("/file.bin?case=pinned");
    const r = await dfget(daemon.socketPath, url, join(out, "pinned"));
    expect(r.status, r.stderr).toBe(0);
    expect(fileSha(join(out, "pinned"))).toBe(sha(A));
    const seen = origin.seen.slice(base);
    expect(seen).toHaveLength(1 + 5);
    expect(seen[0]?.["if-match"]).toBeUndefined();
    for (const h of seen.slice(1)) expect(h["if-match"]).toBe(origin.etag);
    expect(tasksOf(daemon, url)[0]?.meta.pin).toEqual({ etag: origin.etag, lastModified: origin.lastModified, contentLength: SIZE });
  });

  for (const preconditions of [true, false]) {
    const how = preconditions ? "answering 412" : "ignoring the precondition";
    it(`fails with both ETags named when the origin changes mid-way (${how}); no file, no cached task`, async () => {
      flipAt(origin, 2, "etag", preconditions);
      const etagA = origin.etag;
      const url = origin.url(`/file.bin?case=etag-${preconditions}`);
      const r = await dfget(daemon.socketPath, url, join(out, `etag-${preconditions}`));
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(url);
      expect(r.stderr).toContain("origin content changed");
      // Both versions named (the pinned one as the If-Match a 412 answered, or as the ETag).
      expect(r.stderr).toContain(etagA);
      expect(r.stderr).toContain(`ETag ${origin.etag}`);
      expect(existsSync(join(out, `etag-${preconditions}`))).toBe(false);
      expect(tasksOf(daemon, url)).toEqual([]);
      // The next download starts afresh, with the version the origin has now.
      origin.beforeServe = undefined;
      const again = await dfget(daemon.socketPath, url, join(out, `etag-${preconditions}-again`));
      expect(again.status, again.stderr).toBe(0);
      expect(fileSha(join(out, `etag-${preconditions}-again`))).toBe(sha(B));
    });

    it(`fails when only Last-Modified tells the versions apart (${how})`, async () => {
      const base = flipAt(origin, 2, "last-modified", preconditions);
      const lmA = origin.lastModified;
      const url = origin.url(`/file.bin?case=lm-${preconditions}`);
      const r = await dfget(daemon.socketPath, url, join(out, `lm-${preconditions}`));
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(url);
      expect(r.stderr).toContain(lmA);
      expect(r.stderr).toContain(`Last-Modified ${origin.lastModified}`);
      expect(existsSync(join(out, `lm-${preconditions}`))).toBe(false);
      expect(tasksOf(daemon, url)).toEqual([]);
      for (const h of origin.seen.slice(base + 1)) expect(h["if-unmodified-since"]).toBe(lmA);
    });
  }

  it("reads an origin without validators in one response: exactly one version, whenever it changes", async () => {
    for (const flip of [1, 2]) {
      const base = flipAt(origin, flip, "none");
      const url = origin.url(`/file.bin?case=none-${flip}`);
      const r = await dfget(daemon.socketPath, url, join(out, `none-${flip}`));
      expect(r.status, r.stderr).toBe(0);
      const got = fileSha(join(out, `none-${flip}`));
      expect([sha(A), sha(B)]).toContain(got);
      // Changed before the one response (1) or after it began (2).
      expect(got).toBe(flip === 1 ? sha(B) : sha(A));
      const seen = origin.seen.slice(base);
      expect(seen).toHaveLength(2);
      expect(seen[1]?.range).toBe(`bytes=0-${SIZE - 1}`);
      expect(seen[1]?.["if-match"]).toBeUndefined();
    }
  });

});

describe("download.restartOnOriginChange", () => {
  let origin: Origin;
  let restarting: DaemonHandle;
  let out: string;

  beforeAll(async () => {
    out = tempDir("pinning-restart-out");
    origin = await startOrigin(A);
    const dir = tempDir("daemon-pin-restart");
    restarting = await startTestDaemon({
      name: "pin-restart",
      schedulers: [],
      dir,
      overrides: { download: { server: { socketPath: join(dir, "dfdaemon.sock") }, collectedPieceTimeout: "10s", pieceTimeout: "30s", restartOnOriginChange: true } },
    });
  });

  afterAll(async () => {
    await restarting?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  it("restarts once from scratch and gets exactly the new version", async () => {
    const base = flipAt(origin, 2, "etag");
    const url = origin.url("/file.bin?case=restart");
    const r = await dfget(restarting.socketPath, url, join(out, "restart"));
    expect(r.status, r.stderr).toBe(0);
    expect(fileSha(join(out, "restart"))).toBe(sha(B));
    // Two stats: the first download and the restart.
    expect(origin.seen.slice(base).filter((h) => h.range === "bytes=0-0")).toHaveLength(2);
    const [task] = tasksOf(restarting, url);
    expect(task?.meta.state).toBe("succeeded");
    expect(task?.meta.pin?.etag).toBe(origin.etag);
  });

  it("restarts only once: an origin that keeps changing fails the download", async () => {
    flipAt(origin, undefined, "etag");
    // The second piece request after each stat sees a new version: the restart changes too.
    let stats = 0;
    let sinceStat = 0;
    origin.beforeServe = (_n, req) => {
      if (req.headers.range === "bytes=0-0") {
        stats++;
        sinceStat = 0;
      } else if (++sinceStat === 2) origin.setContent(stats === 1 ? B : A);
    };
    const url = origin.url("/file.bin?case=restart-twice");
    const r = await dfget(restarting.socketPath, url, join(out, "restart-twice"));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("origin content changed");
    expect(existsSync(join(out, "restart-twice"))).toBe(false);
    expect(tasksOf(restarting, url)).toEqual([]);
  });
});

describe("origin pinning across peers", () => {
  let origin: Origin;
  let scheduler: SchedulerHandle;
  let seed: DaemonHandle;
  let peer: DaemonHandle;
  let out: string;

  beforeAll(async () => {
    out = tempDir("pinning-p2p");
    origin = await startOrigin(A);
    scheduler = await startTestScheduler();
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    // A slow seed peer, so that a peer is still downloading from it when it goes away.
    seed = await startTestDaemon({ name: "pin-seed", schedulers: [addr], seed: true, overrides: { upload: { server: { ip: "127.0.0.1", port: 0 }, bandwidthLimit: "6MiB" } } });
    peer = await startTestDaemon({ name: "pin-peer", schedulers: [addr] });
  });

  afterAll(async () => {
    await peer?.close();
    await seed?.close();
    await scheduler?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  it("a peer that joins after the origin changed takes the version its parent holds", async () => {
    origin.setContent(A);
    const url = origin.url("/file.bin?case=inherit");
    await downloadVia(seed.socketPath, { url, outputPath: join(out, "seed-inherit") });
    expect(fileSha(join(out, "seed-inherit"))).toBe(sha(A));
    const etagA = origin.etag;
    origin.setContent(B);
    await downloadVia(peer.socketPath, { url, outputPath: join(out, "peer-inherit") });
    expect(fileSha(join(out, "peer-inherit"))).toBe(sha(A));
    const [task] = peer.storage.list().filter((t) => t.meta.url === url);
    expect(task?.meta.pin?.etag).toBe(etagA);
    expect(task?.meta.responseHeader.etag).toBe(etagA);
  }, 120_000);

  it("a peer whose parent goes away mid-way gets exactly the parent's version or fails, never a mix", async () => {
    origin.setContent(A);
    const url = origin.url("/file.bin?case=parent-gone");
    await downloadVia(seed.socketPath, { url, outputPath: join(out, "seed-gone") });
    origin.setContent(B);
    const output = join(out, "peer-gone");
    let closing: Promise<void> | undefined;
    const result = await downloadVia(peer.socketPath, { url, outputPath: output }, () => {
      closing ??= seed.close();
    }).then(
      () => "ok" as const,
      (e: Error) => e,
    );
    await closing;
    expect(closing).toBeDefined();
    if (result === "ok") {
      expect(fileSha(output)).toBe(sha(A));
    } else {
      expect(result.message).toMatch(/origin content changed/);
      expect(existsSync(output)).toBe(false);
    }
  }, 180_000);
});
