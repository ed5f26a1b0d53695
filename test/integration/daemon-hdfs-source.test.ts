// hdfs:// back-to-source through WebHDFS (issue 23), against a real HDFS: Hadoop's
// MiniDFSCluster on 127.0.0.1 (helpers/hdfs.ts; scripts/install-hdfs.sh installs it). A 64 MiB
// file through a seed peer and two peers (every sha256 matches, the datanode served it about once,
// the delegation token reached the namenode), the version pin (a file replaced between reads,
// while a piece is read, and in the middle of a dfget), dfget -r of a directory tree (listed in
// the namenode's pages), and bad input through the real dfget.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { HdfsBackend } from "../../src/daemon/backend/hdfs.js";
import { OriginChangedError } from "../../src/daemon/backend/pin.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { Download } from "../../src/gen/common/v2/common.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { startMiniHdfs, startNamenodeProxy, type MiniHdfs, type NamenodeProxy } from "../helpers/hdfs.js";
import { makeContent } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, runDfget, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("hdfs:// back-to-source (WebHDFS on a MiniDFSCluster)", () => {
  let hdfs: MiniHdfs;
  let proxy: NamenodeProxy;
  let scheduler: SchedulerHandle;
  const daemons: DaemonHandle[] = [];
  const content = makeContent(SIZE, 23);

  beforeAll(async () => {
    hdfs = await startMiniHdfs(tempDir("hdfs"));
    proxy = await startNamenodeProxy(hdfs);
    await hdfs.put("/models/weights v1.bin", content);
    scheduler = await startTestScheduler();
  }, 240_000);

  afterAll(async () => {
    for (const d of daemons.splice(0).reverse()) await d.close().catch(() => undefined);
    await scheduler?.close().catch(() => undefined);
    await proxy?.close().catch(() => undefined);
    await hdfs?.close().catch(() => undefined);
    cleanupTempDirs();
  });

  it("downloads a 64 MiB file through a seed peer and two peers; the datanode serves it about once", async () => {
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    const seed = await startTestDaemon({ name: "hdfs-seed", schedulers: [addr], seed: true });
    daemons.push(seed);
    const peers = [await startTestDaemon({ name: "hdfs-peer-a", schedulers: [addr] }), await startTestDaemon({ name: "hdfs-peer-b", schedulers: [addr] })];
    daemons.push(...peers);
    const url = `hdfs://${proxy.address}/models/weights%20v1.bin`;
    const token = "test-delegation-token-0123456789";
    const before = proxy.served();
    const outs = peers.map((_, i) => join(tempDir(`hdfs-out-${i}`), "weights.bin"));
    // Both at once: the first request makes the scheduler trigger the seed peer, which gets the
    // delegation token with the download; the peers then share what the seed fetched.
    await Promise.all(peers.map((p, i) => downloadVia(p.socketPath, { url, outputPath: outs[i], hdfs: { delegationToken: token } })));
    for (const out of outs) expect(sha256File(out)).toBe(sha(content));
    const served = proxy.served() - before;
    expect(served).toBeGreaterThanOrEqual(SIZE);
    expect(served).toBeLessThanOrEqual(1.05 * SIZE);
    // The seed fetched from HDFS, pinned to the file's version; the peers from the swarm.
    expect(seed.storage.list()[0]!.meta.pin?.etag).toMatch(/^"hdfs-\d+-67108864-\d+"$/);
    for (const p of peers) expect(p.storage.list()[0]!.finished().every((piece) => piece.parentId !== "")).toBe(true);
    // Every namenode call carried the token (WebHDFS's delegation parameter).
    const calls = proxy.requests.filter((r) => r.startsWith("/webhdfs/v1/models/weights%20v1.bin"));
    expect(calls.length).toBeGreaterThan(0);
    for (const r of calls) expect(new URL(r, "http://x").searchParams.get("delegation")).toBe(token);
  });

  it("pins the file's version: a file replaced after the stat, or while a piece is read, fails with OriginChangedError", async () => {
    const url = hdfs.url("/pinned.bin");
    const hb = new HdfsBackend();
    const backend = hb.forDownload(Download.fromPartial({ url }));
    await hdfs.put("/pinned.bin", makeContent(2 * MiB, 1));
    const st = await backend.stat({ url, headers: {} });
    const pin = { etag: st.headers.etag, contentLength: 2 * MiB };
    const first = await backend.get({ url, headers: {}, pin, range: { start: MiB, length: MiB } });
    let n = 0;
    for await (const c of first.body) n += (c as Buffer).length;
    expect(n).toBe(MiB);
    // Replaced before the next read: the same length, other bytes.
    await hdfs.put("/pinned.bin", makeContent(2 * MiB, 2));
    await expect(drain(await backend.get({ url, headers: {}, pin, range: { start: 0, length: MiB } }))).rejects.toBeInstanceOf(OriginChangedError);
    // Replaced while a piece is read: the answer came, its bytes are not handed on.
    const st2 = await backend.stat({ url, headers: {} });
    const pin2 = { etag: st2.headers.etag, contentLength: 2 * MiB };
    const reading = await backend.get({ url, headers: {}, pin: pin2, range: { start: 0, length: 256 * 1024 } });
    await hdfs.put("/pinned.bin", makeContent(2 * MiB, 3));
    await expect(drain(reading)).rejects.toBeInstanceOf(OriginChangedError);
    await hb.close();
  });

  it.each([0, 5 * MiB + 3])("downloads a file of %i bytes (empty, and a last piece shorter than the others)", async (size) => {
    const d = await startTestDaemon({ name: `hdfs-sized-${size}`, schedulers: [] });
    daemons.push(d);
    const body = makeContent(size, 5);
    await hdfs.put(`/sized/${size}.bin`, body);
    const out = join(tempDir("hdfs-sized"), "f.bin");
    await downloadVia(d.socketPath, { url: hdfs.url(`/sized/${size}.bin`), outputPath: out });
    expect(sha256File(out)).toBe(sha(body));
  });

  describe("dfget", () => {
    let daemon: DaemonHandle;
    beforeAll(async () => {
      daemon = await startTestDaemon({ name: "hdfs-dfget", schedulers: [] });
      daemons.push(daemon);
    });

    it("dfget -r downloads a directory tree, each file a task of its own, under its relative path", async () => {
      const files: Record<string, Buffer> = {
        "tree/config.json": makeContent(1000, 1),
        "tree/shards/part 1.bin": makeContent(5 * MiB + 7, 2),
        "tree/shards/deeper/part-2.bin": makeContent(0, 3),
        "tree/shards/deeper/part-3.bin": makeContent(100, 4),
        "tree/shards/deeper/part-4.bin": makeContent(200, 5),
        // A sibling that starts like the directory: not in it.
        "tree2/other.bin": makeContent(10, 6),
      };
      for (const [k, v] of Object.entries(files)) await hdfs.put(`/${k}`, v);
      await hdfs.mkdirs("/tree/empty");
      const out = tempDir("hdfs-dir-out");
      const before = daemon.storage.list().length;
      // Without the trailing slash: -r makes it a directory.
      const r = await runDfget(daemon.socketPath, [hdfs.url("/tree"), "-r", "-O", out]);
      expect(r.stderr).not.toMatch(/failed|error/i);
      expect(r.status).toBe(0);
      for (const [k, v] of Object.entries(files)) {
        const local = join(out, k.replace(/^tree\//, ""));
        if (k.startsWith("tree2/")) expect(existsSync(local)).toBe(false);
        else expect(sha256File(local)).toBe(sha(v));
      }
      expect(readdirSync(join(out, "empty"))).toEqual([]);
      expect(readdirSync(out).sort()).toEqual(["config.json", "empty", "shards"]);
      expect(daemon.storage.list().length - before).toBe(5);
    });

    async function fails(target: string, flags: string[], error: RegExp, secret?: string): Promise<string> {
      const out = join(tempDir("hdfs-bad-out"), "f.bin");
      const tasks = daemon.storage.list().length;
      const r = await runDfget(daemon.socketPath, [target, "-O", out, ...flags]);
      expect(r.status).not.toBe(0);
      const lines = r.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(target);
      expect(lines[0]).toMatch(error);
      if (secret !== undefined) expect(r.stderr).not.toContain(secret);
      expect(readdirSync(join(out, ".."))).toEqual([]);
      expect(daemon.storage.list()).toHaveLength(tasks);
      return lines[0]!;
    }

    it("a missing file: one line naming the URL, non-zero exit, no output, no task", async () => {
      await fails(hdfs.url("/models/absent.bin"), ["--hdfs-delegation-token", "secret-token-abc"], /no such file or directory/, "secret-token-abc");
    });

    it("a directory without -r, and a namenode that does not answer", async () => {
      await fails(hdfs.url("/models"), [], /is a directory/);
      await fails(`hdfs://127.0.0.1:1/models/weights%20v1.bin`, [], /cannot reach the namenode/);
    });

    it("a file replaced in the middle of a dfget fails it, with no output and no task", async () => {
      const v1 = makeContent(16 * MiB, 7);
      await hdfs.put("/moving.bin", v1);
      // Every read after the first piece's waits at the proxy until the file was replaced.
      const gate = proxy.hold((u) => u.searchParams.get("op") === "OPEN" && u.searchParams.get("offset") !== "0");
      const url = `hdfs://${proxy.address}/moving.bin`;
      const run = fails(url, ["--piece-length", String(4 * MiB)], /origin content changed/);
      await Promise.race([gate.reached, run.then(() => Promise.reject(new Error("dfget ended before its second read")))]);
      await hdfs.put("/moving.bin", makeContent(16 * MiB, 8));
      gate.release();
      await run;
    });
  });
});

async function drain(r: { body: AsyncIterable<unknown> }): Promise<number> {
  let n = 0;
  for await (const c of r.body) n += (c as Buffer).length;
  return n;
}
