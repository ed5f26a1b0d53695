// The back-to-source checks every object store gets (issue 23), against a real store: a
// 64 MiB object through a seed peer and two peers under a test scheduler (every sha256 matches,
// the store served it about once), the version pin (an object replaced between reads fails),
// and bad input through the real dfget (missing bucket, refused credentials, unknown object:
// one line naming the URL, no secret, non-zero exit, no output file, no task in the cache).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ObjectStorageBackend } from "../../src/daemon/backend/object-storage.js";
import { OriginChangedError } from "../../src/daemon/backend/pin.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { Download } from "../../src/gen/common/v2/common.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import type { StoreAccess } from "./object-store-access.js";
import type { RunningStore } from "./object-stores.js";
import { makeContent } from "./origin.js";
import { cleanupTempDirs, downloadVia, runDfget, sha256File, startTestDaemon, startTestScheduler, tempDir } from "./swarm.js";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

export interface ObjectStorageSuite extends StoreAccess {
  scheme: "s3" | "abs" | "gs";
  /** Refused credentials: the flags, and the secret that must not appear in any output. */
  wrongCredentials(endpoint: string): { flags: string[]; secret: string } | { flags: string[]; secret: undefined; error: RegExp };
  /** Schemes served by this store's API too (oss, obs, cos through S3's), downloaded once each. */
  compatible?: Array<"oss" | "obs" | "cos">;
}

export function objectStorageSuite(s: ObjectStorageSuite): void {
  describe(`${s.scheme}:// back-to-source`, () => {
    let store: RunningStore;
    let scheduler: SchedulerHandle;
    const daemons: DaemonHandle[] = [];
    const content = makeContent(SIZE, 23);
    const want = createHash("sha256").update(content).digest("hex");
    const url = `${s.scheme}://${s.bucket}/models/weights%20v1.bin`;

    beforeAll(async () => {
      store = await s.start(tempDir(`${s.scheme}-store`));
      await store.put(s.bucket, "models/weights v1.bin", content);
      scheduler = await startTestScheduler();
    });

    afterAll(async () => {
      for (const d of daemons.splice(0).reverse()) await d.close().catch(() => undefined);
      await scheduler?.close().catch(() => undefined);
      await store?.close().catch(() => undefined);
      cleanupTempDirs();
    });

    it("downloads a 64 MiB object through a seed peer and two peers; the store serves it once", async () => {
      const addr = `127.0.0.1:${scheduler.grpcPort}`;
      const seed = await startTestDaemon({ name: `${s.scheme}-seed`, schedulers: [addr], seed: true });
      daemons.push(seed);
      const peers = [await startTestDaemon({ name: `${s.scheme}-peer-a`, schedulers: [addr] }), await startTestDaemon({ name: `${s.scheme}-peer-b`, schedulers: [addr] })];
      daemons.push(...peers);
      const before = store.proxy.served();
      const outs = peers.map((_, i) => join(tempDir(`${s.scheme}-out-${i}`), "weights.bin"));
      // Both at once: the first request makes the scheduler trigger the seed peer (it gets the
      // credentials with the download); the peers then share what the seed fetched.
      await Promise.all(peers.map((p, i) => downloadVia(p.socketPath, { url, outputPath: outs[i], objectStorage: s.options(store.endpoint) })));
      for (const out of outs) expect(sha256File(out)).toBe(want);
      const served = store.proxy.served() - before;
      expect(served).toBeGreaterThanOrEqual(SIZE);
      expect(served).toBeLessThanOrEqual(1.05 * SIZE);
      // The seed fetched from the store, the peers from the swarm.
      const seedTask = seed.storage.list()[0]!;
      expect(seedTask.meta.pin?.etag).toBeDefined();
      for (const p of peers) expect(p.storage.list()[0]!.finished().every((piece) => piece.parentId !== "")).toBe(true);
    });

    it("pins the object's version: an object replaced after the stat fails with OriginChangedError", async () => {
      const backend = new ObjectStorageBackend({}).forDownload(Download.fromPartial({ url: `${s.scheme}://${s.bucket}/pinned.bin`, objectStorage: s.options(store.endpoint) }));
      const pinnedUrl = `${s.scheme}://${s.bucket}/pinned.bin`;
      await store.put(s.bucket, "pinned.bin", makeContent(2 * MiB, 1));
      const st = await backend.stat({ url: pinnedUrl, headers: {} });
      const pin = { etag: st.headers.etag, contentLength: 2 * MiB };
      const first = await backend.get({ url: pinnedUrl, headers: {}, pin, range: { start: MiB, length: MiB } });
      let n = 0;
      for await (const c of first.body) n += (c as Buffer).length;
      expect(n).toBe(MiB);
      await store.put(s.bucket, "pinned.bin", makeContent(2 * MiB, 2));
      await expect(backend.get({ url: pinnedUrl, headers: {}, pin, range: { start: 0, length: MiB } })).rejects.toBeInstanceOf(OriginChangedError);
    });

    it.each([0, 5 * MiB + 3])("downloads an object of %i bytes (empty, and a last piece shorter than the others)", async (size) => {
      const d = await startTestDaemon({ name: `${s.scheme}-sized-${size}`, schedulers: [] });
      daemons.push(d);
      const body = makeContent(size, 5);
      await store.put(s.bucket, `sized/${size}.bin`, body);
      const out = join(tempDir(`${s.scheme}-sized`), "f.bin");
      await downloadVia(d.socketPath, { url: `${s.scheme}://${s.bucket}/sized/${size}.bin`, outputPath: out, objectStorage: s.options(store.endpoint) });
      expect(sha256File(out)).toBe(createHash("sha256").update(body).digest("hex"));
    });

    it.each(s.compatible ?? [])("downloads the object as %s:// through the same API", async (scheme) => {
      const d = await startTestDaemon({ name: `${scheme}-peer`, schedulers: [] });
      daemons.push(d);
      const out = join(tempDir(`${scheme}-out`), "weights.bin");
      await downloadVia(d.socketPath, { url: url.replace(/^\w+:/, `${scheme}:`), outputPath: out, objectStorage: s.options(store.endpoint) });
      expect(sha256File(out)).toBe(want);
    });

    describe("bad input through dfget", () => {
      let daemon: DaemonHandle;
      beforeAll(async () => {
        daemon = await startTestDaemon({ name: `${s.scheme}-bad`, schedulers: [] });
        daemons.push(daemon);
      });

      async function fails(target: string, flags: string[], error: RegExp, secret?: string): Promise<void> {
        const out = join(tempDir(`${s.scheme}-bad-out`), "f.bin");
        const r = await runDfget(daemon.socketPath, [target, "-O", out, ...flags]);
        expect(r.status).not.toBe(0);
        const lines = r.stderr.trim().split("\n");
        expect(lines).toHaveLength(1);
        expect(lines[0]).toContain(target.replace(/\?.*$/, ""));
        expect(lines[0]).toMatch(error);
        if (secret !== undefined) expect(r.stderr).not.toContain(secret);
        expect(existsSync(out)).toBe(false);
        expect(daemon.storage.list()).toHaveLength(0);
      }

      it("a missing bucket", async () => {
        await fails(`${s.scheme}://no-such-bucket-${s.scheme}/models/weights%20v1.bin`, s.flags(store.endpoint), /does not exist/);
      });

      it("refused credentials", async () => {
        const w = s.wrongCredentials(store.endpoint);
        await fails(url, w.flags, w.secret !== undefined ? /access denied/ : w.error, w.secret);
      });

      it("an unknown object", async () => {
        await fails(`${s.scheme}://${s.bucket}/models/absent.bin`, s.flags(store.endpoint), /no such (object|blob)/);
      });
    });
  });
}
