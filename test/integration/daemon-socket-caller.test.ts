// The download socket writes output files as the user who called (issue 21, safe defaults). The
// daemon runs as root here (as CI does), and callers run as other users (setpriv); each asks for
// an output path over the real unix socket. The kernel's SO_PEERCRED tells the daemon who called:
// the file ends up owned by the caller, and the daemon refuses (PERMISSION_DENIED, no file, no
// fetch) to write where the caller could not: a root-only directory, a planted symlink, a file
// of someone else. The daemon's own uid keeps today's path (hard link into the cache).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, tempDir, writeDaemonConfigFile } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const NOBODY = 65534;
/** A group `nobody` is not in, given to it with setpriv --groups where a test says so. */
const SHARED_GID = 4321;
const repo = new URL("../..", import.meta.url).pathname;
const client = new URL("../helpers/socket-caller.ts", import.meta.url).pathname;

let origin: Origin;
let daemon: DaemonHandle;

interface Answer {
  ok?: boolean;
  code?: number;
  details?: string;
}

/** Downloads through `socket` as uid/gid `uid` with exactly `groups` as supplementary groups. */
function downloadAs(download: Record<string, unknown>, groups: number[] = [], uid = NOBODY, socket = daemon.socketPath): Promise<Answer> {
  const ids = [`--reuid=${uid}`, `--regid=${uid}`, groups.length > 0 ? `--groups=${groups.join(",")}` : "--clear-groups"];
  return new Promise((resolve, reject) => {
    const p = spawn("setpriv", [...ids, process.execPath, "--import", "tsx", client, socket, JSON.stringify(download)], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (b: Buffer) => (out += b.toString()));
    p.stderr.on("data", (b: Buffer) => (err += b.toString()));
    p.on("error", reject);
    p.on("close", (code) => {
      const line = out.trim().split("\n").pop() ?? "";
      if (code !== 0 || !line.startsWith("{")) reject(new Error(`caller exited ${code}: ${err}${out}`));
      else resolve(JSON.parse(line) as Answer);
    });
  });
}

/** A directory of `uid:gid` with `mode`, under a path everyone may search. */
function dirOf(uid: number, gid: number, mode: number): string {
  const d = tempDir("caller-out");
  chmodSync(d, 0o755);
  const inner = join(d, "out");
  mkdirSync(inner);
  chownSync(inner, uid, gid);
  chmodSync(inner, mode);
  return inner;
}

/** A URL of its own per test, so a refused request can be shown to have fetched nothing. */
const urlOf = (name: string) => `${origin.url()}?case=${name}`;

function expectDenied(a: Answer, ...phrases: string[]): void {
  expect(a.code, a.details).toBe(status.PERMISSION_DENIED);
  for (const p of phrases) expect(a.details).toContain(p);
}

beforeAll(async () => {
  origin = await startOrigin(makeContent(5 * 1024 * 1024, 21));
  const dir = tempDir("caller-daemon");
  // The callers must reach the socket: searchable directory, socket open to all.
  chmodSync(dir, 0o755);
  daemon = await startTestDaemon({
    name: "caller",
    schedulers: [],
    dir,
    overrides: { download: { server: { socketPath: join(dir, "dfdaemon.sock"), socketMode: "0666" }, collectedPieceTimeout: "10s", pieceTimeout: "30s" } },
  });
});

afterAll(async () => {
  await daemon?.close();
  await origin?.close();
  cleanupTempDirs();
});

describe("download socket: output written as the caller", () => {
  it("gives the file to the calling user, complete, with no temporary file left", async () => {
    const dir = dirOf(NOBODY, NOBODY, 0o755);
    const out = join(dir, "mine.bin");
    expect(await downloadAs({ url: urlOf("mine"), outputPath: out })).toEqual({ ok: true });
    const st = statSync(out);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([NOBODY, NOBODY, 0o644]);
    expect(sha256File(out)).toBe(origin.sha256);
    expect(readdirSync(dir)).toEqual(["mine.bin"]);
    // A copy, not the cache's file: chowning a hard link would hand the cache to the caller.
    expect(st.nlink).toBe(1);
  });

  it("refuses a directory only root may write, before fetching anything", async () => {
    const dir = dirOf(0, 0, 0o755);
    const out = join(dir, "etc-like.bin");
    const before = origin.requests;
    expectDenied(await downloadAs({ url: urlOf("root-dir"), outputPath: out }), dir, "not writable by uid 65534", "mode 0755, owner uid 0");
    expect(readdirSync(dir)).toEqual([]);
    expect(origin.requests).toBe(before);
  });

  it("refuses a symlink planted at the output path, without touching where it points", async () => {
    const dir = dirOf(NOBODY, NOBODY, 0o755);
    const victim = `/etc/damselfly-peercred-${randomBytes(4).toString("hex")}`;
    const out = join(dir, "planted.bin");
    symlinkSync(victim, out);
    try {
      for (const overwrite of [false, true]) {
        expectDenied(await downloadAs({ url: urlOf("planted"), outputPath: out, overwrite }), out, "symbolic link");
        expect(existsSync(victim)).toBe(false);
        expect(lstatSync(out).isSymbolicLink()).toBe(true);
        expect(readdirSync(dir)).toEqual(["planted.bin"]);
      }
    } finally {
      rmSync(victim, { force: true });
    }
  });

  it("refuses a directory reached through a symlink into a root-only directory", async () => {
    const dir = dirOf(NOBODY, NOBODY, 0o755);
    const rootOnly = dirOf(0, 0, 0o755);
    symlinkSync(rootOnly, join(dir, "link"));
    expectDenied(await downloadAs({ url: urlOf("via-link"), outputPath: join(dir, "link", "x.bin") }), "not writable by uid 65534");
    expect(readdirSync(rootOnly)).toEqual([]);
  });

  it("does not replace a file the caller may not write, even with overwrite", async () => {
    const dir = dirOf(NOBODY, NOBODY, 0o1777);
    const out = join(dir, "roots.bin");
    writeFileSync(out, "root's", { mode: 0o644 });
    expectDenied(await downloadAs({ url: urlOf("roots"), outputPath: out, overwrite: true }), out, "may not be replaced by uid 65534");
    expect(statSync(out).uid).toBe(0);
    expect(readdirSync(dir)).toEqual(["roots.bin"]);
  });

  it("refuses --force-hard-link for another user: it would share the cache's file", async () => {
    const dir = dirOf(NOBODY, NOBODY, 0o755);
    expectDenied(await downloadAs({ url: urlOf("hardlink"), outputPath: join(dir, "h.bin"), forceHardLink: true }), "drop --force-hard-link");
    expect(readdirSync(dir)).toEqual([]);
  });

  it("counts the supplementary groups the calling process really has", async () => {
    const dir = dirOf(0, SHARED_GID, 0o775);
    const out = join(dir, "group.bin");
    expectDenied(await downloadAs({ url: urlOf("group"), outputPath: out }), "not writable by uid 65534");
    expect(await downloadAs({ url: urlOf("group"), outputPath: out }, [SHARED_GID])).toEqual({ ok: true });
    expect(statSync(out).uid).toBe(NOBODY);
    expect(sha256File(out)).toBe(origin.sha256);
  });

  it("keeps today's path for the daemon's own uid: a root-only directory, hard-linked to the cache", async () => {
    const dir = dirOf(0, 0, 0o755);
    const out = join(dir, "own.bin");
    await downloadVia(daemon.socketPath, { url: urlOf("own"), outputPath: out, forceHardLink: true });
    const st = statSync(out);
    expect(st.uid).toBe(0);
    expect(st.nlink).toBeGreaterThan(1);
    expect(sha256File(out)).toBe(origin.sha256);
  });
});

describe("download socket of a daemon that is not root", () => {
  /** The daemon runs as this uid (it cannot chown); callers run as OTHER. */
  const DAEMON = NOBODY;
  const OTHER = 4242;
  let proc: ChildProcess | undefined;
  let socket = "";

  beforeAll(async () => {
    const dir = tempDir("caller-nonroot");
    chmodSync(dir, 0o755);
    chownSync(dir, DAEMON, DAEMON);
    const files = writeDaemonConfigFile(dir, "caller-nonroot", { download: { server: { socketPath: join(dir, "dfdaemon.sock"), socketMode: "0666" } }, security: { allowedBackToSourceCIDRs: ["127.0.0.0/8"] } });
    socket = files.socket;
    const run = `const m = await import(${JSON.stringify(join(repo, "src/cli/dfdaemon.ts"))}); process.exitCode = await m.main(["--config", ${JSON.stringify(files.config)}, "--log-level", "error"]);`;
    proc = spawn("setpriv", [`--reuid=${DAEMON}`, `--regid=${DAEMON}`, "--clear-groups", process.execPath, "--import", "tsx", "--input-type=module", "-e", run], { cwd: repo, stdio: ["ignore", "ignore", "inherit"] });
    await until(() => existsSync(socket), "the non-root daemon's socket", 30_000);
  });

  afterAll(async () => {
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc?.once("exit", resolve));
    proc.kill("SIGTERM");
    await exited;
  });

  it("refuses a directory only the caller may write, saying what the caller can do", async () => {
    const dir = dirOf(OTHER, OTHER, 0o755);
    const before = origin.requests;
    expectDenied(await downloadAs({ url: urlOf("nonroot-own"), outputPath: join(dir, "x.bin") }, [], OTHER, socket), dir, "run dfget as uid 65534", "or run the daemon as root");
    expect(readdirSync(dir)).toEqual([]);
    expect(origin.requests).toBe(before);
  });

  it("writes into a directory both may write; the file stays the daemon's, readable by the caller", async () => {
    const dir = dirOf(0, 0, 0o1777);
    const out = join(dir, "shared.bin");
    expect(await downloadAs({ url: urlOf("nonroot-shared"), outputPath: out }, [], OTHER, socket)).toEqual({ ok: true });
    const st = statSync(out);
    expect([st.uid, st.mode & 0o777]).toEqual([DAEMON, 0o644]);
    expect(sha256File(out)).toBe(origin.sha256);
  });

  it("still writes as today for its own uid", async () => {
    const dir = dirOf(DAEMON, DAEMON, 0o755);
    const out = join(dir, "own.bin");
    expect(await downloadAs({ url: urlOf("nonroot-self"), outputPath: out }, [], DAEMON, socket)).toEqual({ ok: true });
    expect(statSync(out).uid).toBe(DAEMON);
    expect(statSync(out).nlink).toBeGreaterThan(1);
  });
});
