// `dfget -r` of an object store's directory (issue 23), against a real store: the daemon lists
// the entries (ListTaskEntries) and each object becomes a task of its own, written under its
// relative path; the listing follows the store's pagination; --include-files/--exclude-files
// pick objects by their relative path, and a pattern that matches none refuses the download by
// name; an empty directory downloads nothing; a key that would escape the output directory refuses the whole download by name; and
// (on stores with a flat namespace) one object that fails fails the command naming it, with no
// partial file.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { ObjectStorageBackend } from "../../src/daemon/backend/object-storage.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { Download } from "../../src/gen/common/v2/common.js";
import type { StoreAccess } from "./object-store-access.js";
import type { RunningStore } from "./object-stores.js";
import { makeContent } from "./origin.js";
import { cleanupTempDirs, runDfget, sha256File, startTestDaemon, tempDir } from "./swarm.js";

export interface DirectorySuite extends StoreAccess {
  scheme: "s3" | "abs" | "gs";
  /** The store keeps an object `d/a` and an object `d/a/b` side by side (no directories of its own). */
  flatNamespace: boolean;
  /**
   * A key below `trap/` that this store keeps as it is and that would land outside the output
   * directory; none where the store refuses or normalises every such key (SeaweedFS, Azurite).
   */
  escapingKey?: string;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

export function directorySuite(s: DirectorySuite): void {
  describe(`dfget -r ${s.scheme}://`, () => {
    let store: RunningStore;
    let daemon: DaemonHandle;
    const objects: Record<string, Buffer> = {
      "models/config.json": makeContent(1000, 1),
      "models/shards/part 1.bin": makeContent(5 * 1024 * 1024 + 7, 2),
      "models/shards/deeper/part-2.bin": makeContent(0, 3),
      // A sibling prefix that starts like the directory: not in it.
      "models2/other.bin": makeContent(10, 4),
    };

    beforeAll(async () => {
      store = await s.start(tempDir(`${s.scheme}-dir-store`));
      for (const [k, v] of Object.entries(objects)) await store.put(s.bucket, k, v);
      daemon = await startTestDaemon({ name: `${s.scheme}-dir`, schedulers: [] });
    });

    afterAll(async () => {
      await daemon?.close().catch(() => undefined);
      await store?.close().catch(() => undefined);
      cleanupTempDirs();
    });

    const dfget = (url: string, out: string, ...flags: string[]) => runDfget(daemon.socketPath, [url, "-r", "-O", out, ...s.flags(store.endpoint), ...flags]);

    it("downloads every object below nested prefixes, each a task of its own, under its relative path", async () => {
      const out = tempDir(`${s.scheme}-dir-out`);
      const before = daemon.storage.list().length;
      // Without the trailing slash: -r makes it a directory, as Dragonfly's dfget does.
      const r = await dfget(`${s.scheme}://${s.bucket}/models`, out);
      expect(r.status, r.stderr).toBe(0);
      for (const k of ["config.json", "shards/part 1.bin", "shards/deeper/part-2.bin"]) expect(sha256File(join(out, k))).toBe(sha(objects[`models/${k}`]!));
      expect(readdirSync(out).sort()).toEqual(["config.json", "shards"]);
      expect(daemon.storage.list().length - before).toBe(3);
    });

    it("--include-files and --exclude-files pick objects by their path relative to the directory", async () => {
      const out = tempDir(`${s.scheme}-dir-glob`);
      const r = await dfget(`${s.scheme}://${s.bucket}/models/`, out, "-I", "shards/", "-I", "*.json", "--exclude-files", "shards/deeper/");
      expect(r.status, r.stderr).toBe(0);
      expect(readdirSync(out).sort()).toEqual(["config.json", "shards"]);
      expect(readdirSync(join(out, "shards"))).toEqual(["part 1.bin"]);
      expect(sha256File(join(out, "shards/part 1.bin"))).toBe(sha(objects["models/shards/part 1.bin"]!));

      // A pattern that matches no object: the whole download is refused by name, nothing written.
      const none = tempDir(`${s.scheme}-dir-glob-none`);
      for (const flags of [["-I", "*.bin"], ["-I", "shards/", "--exclude-files", "shards/*.json"]]) {
        const bad = await dfget(`${s.scheme}://${s.bucket}/models`, none, ...flags);
        expect(bad.status).not.toBe(0);
        expect(bad.stderr.trim()).toBe(`dfget: ${s.scheme}://${s.bucket}/models/: ${flags[flags.length - 2]!.startsWith("-I") ? "--include-files" : "--exclude-files"} "${flags[flags.length - 1]!}" matches no file; nothing was downloaded`);
      }
      expect(readdirSync(none)).toEqual([]);
    });

    it("follows the store's pagination: one object per page lists the same entries", async () => {
      const url = `${s.scheme}://${s.bucket}/models/`;
      const list = (listPageSize: number) => new ObjectStorageBackend({ listPageSize }).forDownload(Download.fromPartial({ url, objectStorage: s.options(store.endpoint) })).list!({ url, headers: {} }).then((l) => l.entries);
      const paged = await list(1);
      expect(paged.map((e) => e.url).sort()).toEqual([`${s.scheme}://${s.bucket}/models/config.json`, `${s.scheme}://${s.bucket}/models/shards/deeper/part-2.bin`, `${s.scheme}://${s.bucket}/models/shards/part%201.bin`]);
      expect(paged.find((e) => e.url.endsWith("part%201.bin"))?.contentLength).toBe(5 * 1024 * 1024 + 7);
      expect(paged).toEqual(await list(1000));
    });

    it("an empty directory downloads nothing and says so", async () => {
      const out = tempDir(`${s.scheme}-dir-empty`);
      const r = await runDfget(daemon.socketPath, [`${s.scheme}://${s.bucket}/nothing-here/`, "-r", "-O", out, ...s.flags(store.endpoint)]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain(`${s.scheme}://${s.bucket}/nothing-here/ has no objects; nothing was downloaded`);
      expect(readdirSync(out)).toEqual([]);
    });

    const escapingKey = s.escapingKey;
    if (escapingKey !== undefined) it("refuses the whole directory when a key would escape the output directory, naming it", async () => {
      await store.put(s.bucket, "trap/ok.bin", makeContent(10, 5));
      await store.put(s.bucket, escapingKey, makeContent(10, 6));
      const out = join(tempDir(`${s.scheme}-dir-trap`), "out");
      mkdirSync(out);
      const before = daemon.storage.list().length;
      const r = await dfget(`${s.scheme}://${s.bucket}/trap/`, out);
      expect(r.status).not.toBe(0);
      const lines = r.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`"${escapingKey}"`);
      expect(lines[0]).toMatch(/outside the output directory/);
      expect(readdirSync(out)).toEqual([]);
      expect(readdirSync(dirname(out))).toEqual(["out"]);
      expect(daemon.storage.list().length).toBe(before);
    });

    if (s.flatNamespace) it("one object that fails fails the command, naming it, with no partial file", async () => {
      // `clash/a` cannot be written where `clash/a/` must be a directory for `clash/a/b`.
      await store.put(s.bucket, "clash/a", makeContent(10, 7));
      await store.put(s.bucket, "clash/a/b", makeContent(10, 8));
      const out = tempDir(`${s.scheme}-dir-clash`);
      const r = await dfget(`${s.scheme}://${s.bucket}/clash/`, out);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(`${s.scheme}://${s.bucket}/clash/a failed`);
      expect(existsSync(join(out, "a", "b"))).toBe(true);
      expect(readdirSync(join(out, "a"))).toEqual(["b"]);
    });
  });
}
