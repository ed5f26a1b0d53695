// `dfget -r` of a local directory (file://, issue 23) through the real dfget and daemon: the
// daemon lists the tree (ListTaskEntries), each file is a task of its own written under its
// relative path, --include-files/--exclude-files pick the files, a pattern that matches nothing
// refuses the whole download by name, and a directory other users may not list is refused
// unless backend.file.allowPrivate says the socket's users are trusted.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { makeContent } from "../helpers/origin.js";
import { cleanupTempDirs, runDfget, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("dfget -r file://", () => {
  let daemon: DaemonHandle;
  let root: string;
  const files: Record<string, Buffer> = {
    "config.json": makeContent(300, 1),
    ".gitattributes": makeContent(20, 2),
    "weights/model 1.safetensors": makeContent(5 * 1024 * 1024 + 3, 3),
    "weights/model-2.safetensors": makeContent(4000, 4),
    "tokenizer/vocab.txt": makeContent(7000, 5),
    "tokenizer/extra/special.json": makeContent(0, 6),
  };

  beforeAll(async () => {
    root = tempDir("file-dir-src");
    for (const [rel, content] of Object.entries(files)) {
      mkdirSync(join(root, dirname(rel)), { recursive: true });
      writeFileSync(join(root, rel), content, { mode: 0o644 });
    }
    mkdirSync(join(root, "empty"));
    // A link to a directory is not followed (it would loop); a link to a file is that file.
    symlinkSync(root, join(root, "loop"));
    symlinkSync(join(root, "config.json"), join(root, "config-link.json"));
    for (const d of ["", "weights", "tokenizer", "tokenizer/extra", "empty"]) chmodSync(join(root, d), 0o755);
    daemon = await startTestDaemon({ name: "file-dir", schedulers: [] });
  });

  afterAll(async () => {
    await daemon?.close().catch(() => undefined);
    cleanupTempDirs();
  });

  const dfget = (out: string, ...flags: string[]) => runDfget(daemon.socketPath, [pathToFileURL(root).href, "-r", "-O", out, ...flags]);

  it("downloads the whole tree, each file a task of its own, under its relative path", async () => {
    const out = tempDir("file-dir-out");
    const before = daemon.storage.list().length;
    const r = await dfget(out);
    expect(r.status, r.stderr).toBe(0);
    for (const [rel, content] of Object.entries(files)) expect(sha256File(join(out, rel)), rel).toBe(sha(content));
    expect(sha256File(join(out, "config-link.json"))).toBe(sha(files["config.json"]!));
    expect(readdirSync(out).sort()).toEqual([".gitattributes", "config-link.json", "config.json", "empty", "tokenizer", "weights"]);
    expect(daemon.storage.list().length - before).toBe(Object.keys(files).length + 1);
  });

  it("--include-files and --exclude-files pick the files by their relative path", async () => {
    const out = tempDir("file-dir-glob");
    const r = await dfget(out, "--include-files", "weights/", "-I", "**/*.json", "--exclude-files", "**/*-2.*", "--exclude-files", "config-link.json");
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(["config.json", "tokenizer", "weights"]);
    expect(readdirSync(join(out, "weights"))).toEqual(["model 1.safetensors"]);
    expect(readdirSync(join(out, "tokenizer"))).toEqual(["extra"]);
    expect(sha256File(join(out, "weights/model 1.safetensors"))).toBe(sha(files["weights/model 1.safetensors"]!));
    expect(sha256File(join(out, "tokenizer/extra/special.json"))).toBe(sha(files["tokenizer/extra/special.json"]!));
  });

  it("a pattern that matches nothing refuses the download by name, writing nothing", async () => {
    const out = tempDir("file-dir-none");
    const before = daemon.storage.list().length;
    for (const flags of [["-I", "*.bin"], ["-I", "tokenizer/", "--exclude-files", "*.gguf"], ["-I", "weights"]]) {
      const r = await dfget(out, ...flags);
      expect(r.status).not.toBe(0);
      const lines = r.stderr.trim().split("\n");
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toContain(`"${flags[flags.length - 1]!}" matches no file`);
      expect(readdirSync(out)).toEqual([]);
    }
    expect(daemon.storage.list().length).toBe(before);
  });

  it("a pattern that is not a plain relative path, or used without -r, is refused before listing", async () => {
    const out = tempDir("file-dir-bad");
    const r = await dfget(out, "-I", "../etc/passwd");
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim()).toBe('dfget: --include-files "../etc/passwd" has an empty, "." or ".." segment');
    const single = await runDfget(daemon.socketPath, [pathToFileURL(join(root, "config.json")).href, "-O", join(out, "c.json"), "-I", "*.json"]);
    expect(single.status).not.toBe(0);
    expect(single.stderr).toContain("use them with -r/--recursive");
    expect(readdirSync(out)).toEqual([]);
  });

  it("a directory other users may not list is refused, naming it", async () => {
    const priv = join(root, "private");
    mkdirSync(priv, { mode: 0o700 });
    writeFileSync(join(priv, "secret.bin"), makeContent(10, 7), { mode: 0o644 });
    try {
      const out = tempDir("file-dir-private");
      const r = await dfget(out);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(`directory ${priv} is not readable and searchable by every user (mode 700)`);
      expect(readdirSync(out)).toEqual([]);
    } finally {
      rmSync(priv, { recursive: true, force: true });
    }
  });
});
