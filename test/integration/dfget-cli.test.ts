// dfget as a user runs it: real process, real flags. With no daemon on the socket it found it says
// so and starts a one-shot daemon; with none on a socket named by -e or DAMSELFLY_ENDPOINT it
// fails. Every failure is one line on stderr, a non-zero exit and no file left behind.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { until } from "../helpers/until.js";
import { cleanupTempDirs, tempDir } from "../helpers/swarm.js";

const bin = new URL("../../bin/dfget.js", import.meta.url).pathname;
let origin: Origin;
let dir: string;
/** Where the endpoint.json in `dir` says the daemon is; nothing listens there. */
let endpoint: string;
/** What dfget prints before starting its one-shot daemon. */
let notice: string;

// Run in `dir`, whose .damselfly/endpoint.json (of a "running up": this process) names a socket
// with no daemon: the discovery path, without depending on what /var/run holds on this host.
function dfget(args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, ...args], { cwd: dir, env: { ...process.env, DAMSELFLY_ENDPOINT: undefined, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    p.stdout.on("data", (b: Buffer) => out.push(b));
    p.stderr.on("data", (b: Buffer) => (err += b.toString()));
    p.on("close", (status) => resolve({ status, stdout: Buffer.concat(out), stderr: err }));
  });
}

function expectOneLineError(r: { status: number | null; stderr: string }, pattern: RegExp): void {
  expect(r.status).not.toBe(0);
  const lines = r.stderr.trim().split("\n");
  // Failures during the download come after the one-shot notice.
  if (lines[0] === notice) lines.shift();
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^dfget: /);
  expect(lines[0]).toMatch(pattern);
}

beforeAll(async () => {
  origin = await startOrigin(makeContent(12 * 1024 * 1024, 21));
  dir = tempDir("dfget");
  endpoint = join(dir, "no-daemon-here.sock");
  notice = `dfget: no dfdaemon at ${endpoint}; starting a one-shot daemon for this download (start one with 'damselfly up' or pass -e)`;
  mkdirSync(join(dir, ".damselfly"));
  const up = { pid: process.pid, dataDir: join(dir, ".damselfly"), socket: endpoint, proxy: "http://127.0.0.1:4001", manager: "http://127.0.0.1:8080" };
  writeFileSync(join(dir, ".damselfly", "endpoint.json"), JSON.stringify(up));
});

afterAll(async () => {
  await origin.close();
  cleanupTempDirs();
});

describe("dfget", () => {
  it("says it starts a one-shot daemon when none runs on the socket it found, and prints a one-line summary", async () => {
    const out = join(dir, "ok.bin");
    const r = await dfget([origin.url(), "-O", out, "--digest", `sha256:${origin.sha256}`]);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(notice);
    expect(lines[1]).toMatch(/^dfget: downloaded 12\.0 MiB in [\d.]+s .* to /);
    expect(r.status).toBe(0);
    expect(createHash("sha256").update(readFileSync(out)).digest("hex")).toBe(origin.sha256);
  });

  it("fails, naming the socket, when the daemon named by -e or DAMSELFLY_ENDPOINT is not there", async () => {
    const out = join(dir, "explicit.bin");
    const flag = await dfget(["-e", "missing.sock", origin.url(), "-O", out]);
    expect(flag.stderr).toBe(`dfget: cannot reach the dfdaemon at ${join(dir, "missing.sock")} (given by -e/--endpoint; is it running? pass -e SOCKET or set DAMSELFLY_ENDPOINT)\n`);
    expect(flag.status).not.toBe(0);
    const env = await dfget([origin.url(), "-O", out], { DAMSELFLY_ENDPOINT: "/nonexistent/dfdaemon.sock" });
    expect(env.stderr).toBe("dfget: cannot reach the dfdaemon at /nonexistent/dfdaemon.sock (from $DAMSELFLY_ENDPOINT; is it running? pass -e SOCKET or set DAMSELFLY_ENDPOINT)\n");
    expect(env.status).not.toBe(0);
    expect(existsSync(out)).toBe(false);
  });

  it("writes to stdout with -O -", async () => {
    const r = await dfget([origin.url("/file.bin?stdout=1"), "-O", "-"]);
    expect(r.status).toBe(0);
    expect(createHash("sha256").update(r.stdout).digest("hex")).toBe(origin.sha256);
  });

  it("needs --overwrite to replace a file", async () => {
    const out = join(dir, "exists.bin");
    writeFileSync(out, "keep me");
    expectOneLineError(await dfget([origin.url(), "-O", out]), /already exists \(use --overwrite/);
    expect(readFileSync(out, "utf8")).toBe("keep me");
    const r = await dfget([origin.url(), "-O", out, "--overwrite"]);
    expect(r.status).toBe(0);
    expect(readFileSync(out).length).toBe(origin.content.length);
  });

  it("rejects an unknown flag", async () => {
    expectOneLineError(await dfget([origin.url(), "-O", join(dir, "x"), "--bogus"]), /unknown option '--bogus'/);
  });

  it("rejects a bad digest and a bad priority before downloading", async () => {
    expectOneLineError(await dfget([origin.url(), "-O", join(dir, "x"), "--digest", "sha256:zz"]), /invalid digest/);
    expectOneLineError(await dfget([origin.url(), "-O", join(dir, "x"), "-p", "9"]), /--priority/);
  });

  const failures: Array<[string, () => string, RegExp]> = [
    ["an unreachable origin", () => "http://127.0.0.1:1/file.bin", /ECONNREFUSED|connect/],
    ["a 404 from the origin", () => origin.url("/missing"), /404/],
    ["a digest mismatch", () => origin.url("/file.bin?d=1"), /digest mismatch/],
  ];
  it.each(failures)("fails cleanly on %s and leaves no file", async (_name, url, pattern) => {
    const out = join(dir, `fail-${Math.random().toString(16).slice(2)}`);
    const args = [url(), "-O", out];
    if (pattern.source.includes("digest")) args.push("--digest", `sha256:${"1".repeat(64)}`);
    expectOneLineError(await dfget(args), pattern);
    expect(existsSync(out)).toBe(false);
  });

  it("fails cleanly on a 500 from the origin", async () => {
    origin.failWith = 500;
    try {
      const out = join(dir, "five-hundred");
      expectOneLineError(await dfget([origin.url("/file.bin?e=500"), "-O", out]), /500/);
      expect(existsSync(out)).toBe(false);
    } finally {
      origin.failWith = undefined;
    }
  });

  it("fails cleanly when the output directory is missing", async () => {
    expectOneLineError(await dfget([origin.url(), "-O", join(dir, "nope", "file")]), /output directory does not exist/);
  });

  it("fails cleanly when the output directory is read-only", async () => {
    const ro = join(dir, "ro");
    mkdirSync(ro);
    // root ignores mode bits, so as root a read-only mount stands in for a read-only directory.
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      const m = spawnSync("mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro]);
      if (m.status !== 0) return console.warn(`skipping read-only check: mount failed: ${m.stderr.toString().trim()}`);
    } else spawnSync("chmod", ["555", ro]);
    try {
      expectOneLineError(await dfget([origin.url(), "-O", join(ro, "file")]), /not writable|read-only/);
      expect(existsSync(join(ro, "file"))).toBe(false);
    } finally {
      if (asRoot) spawnSync("umount", [ro]);
    }
  });

  it("gives a one-shot daemon of the memory tier its own tmpfs root, removed when dfget exits", async () => {
    const shm = join(dir, "shm");
    mkdirSync(shm, { mode: 0o1777 });
    // The shared root of this uid, planted as a symlink: a daemon using it would refuse it (or
    // fill what it points to); the one-shot daemon must not go near it.
    const uid = process.getuid?.() ?? 0;
    const elsewhere = join(dir, "planted");
    mkdirSync(elsewhere, { mode: 0o700 });
    symlinkSync(elsewhere, join(shm, `damselfly-${uid}`));
    const config = join(dir, "memory-tier.yaml");
    writeFileSync(config, `storage:\n  tier: memory\n  tmpfsDir: ${shm}\n`);
    const out = join(dir, "memory-tier.bin");
    const r = await dfget([origin.url(), "-O", out, "-c", config]);
    expect(r.stderr.split("\n")[0]).toBe(notice);
    expect(r.status, r.stderr).toBe(0);
    expect(createHash("sha256").update(readFileSync(out)).digest("hex")).toBe(origin.sha256);
    expect(readdirSync(shm)).toEqual([`damselfly-${uid}`]);
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  it("removes the one-shot daemon's directories and tmpfs root when interrupted", async () => {
    const shm = join(dir, "shm-int");
    const tmp = join(dir, "tmp-int");
    mkdirSync(shm, { mode: 0o1777 });
    mkdirSync(tmp);
    const config = join(dir, "memory-tier-int.yaml");
    writeFileSync(config, `storage:\n  tier: memory\n  tmpfsDir: ${shm}\n`);
    origin.delayMs = 5000;
    try {
      const p = spawn(process.execPath, [bin, origin.url("/file.bin?interrupted=1"), "-O", join(dir, "interrupted.bin"), "-c", config], { cwd: dir, env: { ...process.env, DAMSELFLY_ENDPOINT: undefined, TMPDIR: tmp }, stdio: ["ignore", "ignore", "pipe"] });
      let err = "";
      p.stderr.on("data", (b: Buffer) => (err += b.toString()));
      const exited = new Promise<number | null>((resolve) => p.on("close", resolve));
      // Interrupted while the one-shot daemon waits for the slow origin.
      await until(() => readdirSync(shm).length > 0 && readdirSync(tmp).some((d) => existsSync(join(tmp, d, "dfdaemon.sock"))), "the one-shot daemon's socket");
      p.kill("SIGINT");
      expect(await exited, err).toBe(130);
      expect(readdirSync(shm)).toEqual([]);
      expect(readdirSync(tmp)).toEqual([]);
      expect(existsSync(join(dir, "interrupted.bin"))).toBe(false);
    } finally {
      origin.delayMs = 0;
    }
  });
});
