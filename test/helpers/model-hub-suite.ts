// The back-to-source checks each model hub gets (issue 23), against the hub fixture
// (model-hub-fixture.ts, itself checked against the real huggingface_hub client): a private
// repository's file through a seed peer and two peers (the token rides with the download to the
// seed; every sha256 matches; the hub served the file once), `dfget -r` of a whole repository
// (with --include-files/--exclude-files; on Hugging Face, every file at the commit the listing
// saw although the branch moves right after it), the version pin when a branch moves, and bad input through the real dfget (unknown repository,
// unknown revision, wrong token, unknown file, a repository without -r): one line naming the
// URL, never the token, a non-zero exit, no output file and no task in the cache.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { huggingFace } from "../../src/daemon/backend/hugging-face.js";
import { ModelHubBackend } from "../../src/daemon/backend/model-hub.js";
import { modelScope } from "../../src/daemon/backend/model-scope.js";
import { OriginChangedError } from "../../src/daemon/backend/pin.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { Download } from "../../src/gen/common/v2/common.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { startHubFixture, type Hub, type HubFixture } from "./model-hub-fixture.js";
import { makeContent } from "./origin.js";
import { cleanupTempDirs, downloadVia, runDfget, sha256File, startTestDaemon, startTestScheduler, tempDir } from "./swarm.js";

const MiB = 1024 * 1024;
const SIZE = 24 * MiB + 5;
const TOKEN = "hub_token_3f9a8b7c6d5e4f30";
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

export function modelHubSuite(hub: Hub): void {
  const flag = hub === "hf" ? "--hf" : "--ms";
  const revision = hub === "hf" ? "main" : "master";
  const configKey = hub === "hf" ? "huggingFace" : "modelScope";
  const options = (o: { token?: string; revision?: string; baseUrl?: string }) => (hub === "hf" ? { huggingFace: { revision, ...o } } : { modelScope: { revision, ...o } });

  describe(`${hub}:// back-to-source`, () => {
    let fixture: HubFixture;
    let scheduler: SchedulerHandle;
    const daemons: DaemonHandle[] = [];
    const weights = makeContent(SIZE, 31);
    const repoFiles: Record<string, Buffer> = {
      "config.json": Buffer.from('{"architectures":["Tiny"]}\n'),
      "model-00001-of-00002.safetensors": makeContent(5 * MiB + 3, 32),
      "model-00002-of-00002.safetensors": makeContent(MiB, 33),
      "tokenizer/vocab with space.txt": makeContent(7000, 34),
      "tokenizer/empty.txt": Buffer.alloc(0),
    };
    const hubConfig = () => ({ backend: { [configKey]: { endpoint: fixture.url } } });

    beforeAll(async () => {
      fixture = await startHubFixture(hub);
      fixture.commit("acme/private", { "weights/model.safetensors": weights }, { token: TOKEN });
      fixture.commit("acme/tiny", repoFiles);
      scheduler = await startTestScheduler();
    });

    afterAll(async () => {
      for (const d of daemons.splice(0).reverse()) await d.close().catch(() => undefined);
      await scheduler?.close().catch(() => undefined);
      await fixture?.close();
      cleanupTempDirs();
    });

    it("downloads a private repository's file through a seed peer and two peers; the hub serves it once", async () => {
      const addr = `127.0.0.1:${scheduler.grpcPort}`;
      const seed = await startTestDaemon({ name: `${hub}-seed`, schedulers: [addr], seed: true, overrides: hubConfig() });
      daemons.push(seed);
      const peers = [await startTestDaemon({ name: `${hub}-peer-a`, schedulers: [addr], overrides: hubConfig() }), await startTestDaemon({ name: `${hub}-peer-b`, schedulers: [addr], overrides: hubConfig() })];
      daemons.push(...peers);
      const url = `${hub}://acme/private/weights/model.safetensors`;
      const outs = peers.map((_, i) => join(tempDir(`${hub}-out-${i}`), "model.safetensors"));
      // Both at once: the scheduler triggers the seed peer, which gets the token with the download.
      await Promise.all(peers.map((p, i) => downloadVia(p.socketPath, { url, outputPath: outs[i], ...options({ token: TOKEN }) })));
      for (const out of outs) expect(sha256File(out)).toBe(sha(weights));
      const served = fixture.served("weights/model.safetensors");
      expect(served).toBeGreaterThanOrEqual(SIZE);
      // Each daemon's stat reads one byte; the content itself once.
      expect(served).toBeLessThanOrEqual(1.05 * SIZE);
      expect(seed.storage.list()[0]!.meta.pin?.etag).toBe(`"${sha(weights)}"`);
      for (const p of peers) expect(p.storage.list()[0]!.finished().every((piece) => piece.parentId !== "")).toBe(true);
    });

    it("dfget -r downloads every file of a repository, each a task of its own, under its path", async () => {
      const d = await startTestDaemon({ name: `${hub}-dir`, schedulers: [] });
      daemons.push(d);
      const out = tempDir(`${hub}-repo-out`);
      // The hub's base URL from dfget's flag (this daemon's config names none).
      const r = await runDfget(d.socketPath, [`${hub}://acme/tiny`, "-r", "-O", out, `${flag}-base-url`, fixture.url]);
      expect(r.stderr).not.toMatch(/failed/);
      expect(r.status).toBe(0);
      for (const [path, content] of Object.entries(repoFiles)) {
        expect(sha256File(join(out, path)), path).toBe(sha(content));
        expect(fixture.served(path), path).toBeLessThanOrEqual(content.length + 1);
      }
      expect(readdirSync(out).sort()).toEqual(["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "tokenizer"]);
      expect(d.storage.list()).toHaveLength(Object.keys(repoFiles).length);
    });

    it("a folder of the repository with -r downloads only that folder", async () => {
      const d = await startTestDaemon({ name: `${hub}-folder`, schedulers: [], overrides: hubConfig() });
      daemons.push(d);
      const out = tempDir(`${hub}-folder-out`);
      const r = await runDfget(d.socketPath, [`${hub}://acme/tiny/tokenizer`, "-r", "-O", out]);
      expect(r.status, r.stderr).toBe(0);
      expect(readdirSync(out).sort()).toEqual(["empty.txt", "vocab with space.txt"]);
      expect(sha256File(join(out, "vocab with space.txt"))).toBe(sha(repoFiles["tokenizer/vocab with space.txt"]!));
    });

    it("dfget -r with --include-files and --exclude-files downloads only the files they pick", async () => {
      const d = await startTestDaemon({ name: `${hub}-glob`, schedulers: [], overrides: hubConfig() });
      daemons.push(d);
      const out = tempDir(`${hub}-glob-out`);
      const r = await runDfget(d.socketPath, [`${hub}://acme/tiny`, "-r", "-O", out, "-I", "*.safetensors", "--include-files", "tokenizer/", "--exclude-files", "*-00002-*", "--exclude-files", "**/empty.txt"]);
      expect(r.status, r.stderr).toBe(0);
      expect(readdirSync(out).sort()).toEqual(["model-00001-of-00002.safetensors", "tokenizer"]);
      expect(readdirSync(join(out, "tokenizer"))).toEqual(["vocab with space.txt"]);
      expect(sha256File(join(out, "model-00001-of-00002.safetensors"))).toBe(sha(repoFiles["model-00001-of-00002.safetensors"]!));
      expect(d.storage.list()).toHaveLength(2);
      // A pattern that matches no file of the repository: refused by name, nothing written.
      const none = tempDir(`${hub}-glob-none`);
      const bad = await runDfget(d.socketPath, [`${hub}://acme/tiny`, "-r", "-O", none, "-I", "*.gguf"]);
      expect(bad.status).not.toBe(0);
      expect(bad.stderr.trim()).toBe(`dfget: ${hub}://acme/tiny/: --include-files "*.gguf" matches no file; nothing was downloaded`);
      expect(readdirSync(none)).toEqual([]);
      expect(d.storage.list()).toHaveLength(2);
    });

    // ModelScope's API names no commit for a revision (not in its file list, not in its file
    // answers): there each file is pinned on its own (ETag), not the listing as a whole.
    if (hub === "hf") it("dfget -r downloads every file at the commit the listing saw, though the branch moves right after it", async () => {
      const v1 = { "a.bin": makeContent(3 * MiB, 51), "sub/b.bin": makeContent(1000, 52), "c.txt": Buffer.from("first\n") };
      const v2 = { "a.bin": makeContent(3 * MiB, 53), "sub/b.bin": makeContent(1000, 54), "c.txt": Buffer.from("second\n") };
      const first = fixture.commit("acme/moving-repo", v1);
      let second: string | undefined;
      fixture.afterListing = (repo) => {
        if (repo === "acme/moving-repo" && second === undefined) second = fixture.commit("acme/moving-repo", v2);
      };
      try {
        const d = await startTestDaemon({ name: `${hub}-pinned`, schedulers: [], overrides: hubConfig() });
        daemons.push(d);
        const out = tempDir(`${hub}-pinned-out`);
        const r = await runDfget(d.socketPath, [`${hub}://acme/moving-repo`, "-r", "-O", out]);
        expect(r.status, r.stderr).toBe(0);
        // The branch did move before any file was asked for.
        expect(second).toBeDefined();
        expect(second).not.toBe(first);
        for (const [path, content] of Object.entries(v1)) expect(sha256File(join(out, path)), path).toBe(sha(content));
        const fileRequests = fixture.log.filter((l) => l.includes("/acme/moving-repo/resolve/"));
        expect(fileRequests.length).toBeGreaterThanOrEqual(3);
        for (const l of fileRequests) expect(l).toContain(`/resolve/${first}/`);
      } finally {
        fixture.afterListing = undefined;
      }
    });

    it("a branch that moves to other content mid-download never mixes versions", async () => {
      const api = hub === "hf" ? huggingFace : modelScope;
      const backend = new ModelHubBackend(api, { http: { maxRetries: 0 }, endpoint: fixture.url });
      const url = `${hub}://acme/moving/f.bin`;
      const v1 = makeContent(2 * MiB, 41);
      fixture.commit("acme/moving", { "f.bin": v1 });
      const d = Download.fromPartial({ url, ...options({}) });
      const bound = backend.forDownload(d);
      const st = await bound.stat({ url, headers: {} });
      const pin = { etag: st.headers.etag, contentLength: 2 * MiB };
      fixture.commit("acme/moving", { "f.bin": makeContent(2 * MiB, 42) });
      const read = async (b: typeof bound) => {
        const res = await b.get({ url, headers: {}, pin, range: { start: MiB, length: MiB } });
        const chunks: Buffer[] = [];
        for await (const c of res.body) chunks.push(c as Buffer);
        return Buffer.concat(chunks);
      };
      if (hub === "hf") {
        // The stat learned the commit (X-Repo-Commit): this download keeps reading it.
        expect((await read(bound)).equals(v1.subarray(MiB))).toBe(true);
      }
      // Without the commit (a daemon that resumes the task), the revision's new content fails the pin.
      await expect(read(backend.forDownload(d))).rejects.toBeInstanceOf(OriginChangedError);
      await backend.close();
    });

    describe("bad input through dfget", () => {
      let daemon: DaemonHandle;
      beforeAll(async () => {
        daemon = await startTestDaemon({ name: `${hub}-bad`, schedulers: [], overrides: hubConfig() });
        daemons.push(daemon);
      });

      async function fails(target: string, flags: string[], error: RegExp, recursive = false): Promise<void> {
        const dir = tempDir(`${hub}-bad-out`);
        const out = recursive ? dir : join(dir, "f.bin");
        const r = await runDfget(daemon.socketPath, [target, ...(recursive ? ["-r"] : []), "-O", out, ...flags]);
        expect(r.status).not.toBe(0);
        const lines = r.stderr.trim().split("\n");
        expect(lines, r.stderr).toHaveLength(1);
        expect(lines[0]).toContain(target);
        expect(lines[0]).toMatch(error);
        expect(r.stderr).not.toContain(TOKEN.slice(4));
        expect(recursive ? readdirSync(dir) : existsSync(out)).toEqual(recursive ? [] : false);
        expect(daemon.storage.list()).toHaveLength(0);
      }

      it("an unknown repository", async () => {
        await fails(`${hub}://acme/no-such-repo/config.json`, [], /repository acme\/no-such-repo (or its revision "\w+" )?not found/);
      });

      it("a revision that does not exist", async () => {
        await fails(`${hub}://acme/tiny/config.json`, [`${flag}-revision`, "no-such-branch"], /no-such-branch/);
      });

      it("a revision that does not exist, with -r", async () => {
        await fails(`${hub}://acme/tiny`, [`${flag}-revision`, "no-such-branch"], /no-such-branch/, true);
      });

      it("a wrong token", async () => {
        await fails(`${hub}://acme/private/weights/model.safetensors`, [`${flag}-token`, `${TOKEN}-wrong`], /refused the token \(401/);
      });

      it("no token for a private repository", async () => {
        await fails(`${hub}://acme/private/weights/model.safetensors`, [], hub === "hf" ? /repository acme\/private not found .*needs a token/ : /asks for a token \(401.*--ms-token/);
      });

      it("an unknown file", async () => {
        await fails(`${hub}://acme/tiny/absent.bin`, [], /no file "absent.bin" in acme\/tiny at revision/);
      });

      it("a repository without -r", async () => {
        await fails(`${hub}://acme/tiny`, [], /names a repository, not a file; download a whole repository with dfget --recursive/);
      });
    });
  });
}
