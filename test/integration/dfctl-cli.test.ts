// dfctl against a running daemon: list, stat and remove local tasks; clear errors otherwise.
// The daemon is found by -e, $DAMSELFLY_ENDPOINT or the .damselfly/endpoint.json of `damselfly up`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, startTestDaemon, tempDir } from "../helpers/swarm.js";

const bin = new URL("../../bin/dfctl.js", import.meta.url).pathname;
let origin: Origin;
let daemon: DaemonHandle;
let taskId: string;

interface RunOptions {
  cwd?: string;
  /** Extra environment; DAMSELFLY_ENDPOINT is unset unless given, whatever the test runner has. */
  env?: Record<string, string>;
  /** args start with the CLI to run instead of dfctl. */
  withBin?: boolean;
}

// Asynchronous: the daemon runs in this process and must keep serving while dfctl runs.
function run(args: string[], o: RunOptions = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, o.withBin ? args : [bin, ...args], { cwd: o.cwd, env: { ...process.env, DAMSELFLY_ENDPOINT: undefined, ...o.env } });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    p.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}
const dfctl = (...args: string[]) => run(["-e", daemon.socketPath, ...args]);

/** A project directory holding the endpoint.json a running `damselfly up` (this process) writes. */
function upProject(socket: string): string {
  const proj = tempDir("up-proj");
  mkdirSync(join(proj, ".damselfly"));
  const up = { pid: process.pid, dataDir: join(proj, ".damselfly"), socket, proxy: "http://127.0.0.1:4001", manager: "http://127.0.0.1:8080" };
  writeFileSync(join(proj, ".damselfly", "endpoint.json"), JSON.stringify(up));
  return proj;
}

beforeAll(async () => {
  origin = await startOrigin(makeContent(6 * 1024 * 1024, 9));
  daemon = await startTestDaemon({ name: "ctl", schedulers: [] });
  taskId = (await downloadVia(daemon.socketPath, { url: origin.url(), outputPath: join(tempDir("ctl-out"), "f") })).taskId;
});

afterAll(async () => {
  await daemon.close();
  await origin.close();
  cleanupTempDirs();
});

describe("dfcache", () => {
  const dfcacheBin = new URL("../../bin/dfcache.js", import.meta.url).pathname;
  const dfcache = (...args: string[]) => run([dfcacheBin, "-e", daemon.socketPath, ...args], { withBin: true });

  it("shows and exports a cached task without touching the origin", async () => {
    const stat = await dfcache("stat", taskId);
    expect(JSON.parse(stat.stdout)).toMatchObject({ id: taskId, url: origin.url(), contentLength: 6291456, piecesHeld: 2, state: "Succeeded" });
    const before = origin.bytesServed;
    const out = join(tempDir("export"), "copy");
    const r = await dfcache("export", taskId, "-O", out);
    expect(r.status).toBe(0);
    expect(readFileSync(out).equals(origin.content)).toBe(true);
    expect(origin.bytesServed - before).toBeLessThanOrEqual(1);
    const missing = await dfcache("stat", "f".repeat(64));
    expect(missing.stderr.trim()).toBe(`dfcache: task ${"f".repeat(64)} not found`);
  });

  it("finds the daemon of a running damselfly up without -e", async () => {
    const r = await run([dfcacheBin, "stat", taskId], { withBin: true, cwd: upProject(daemon.socketPath) });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toMatchObject({ id: taskId, state: "Succeeded" });
  });
});

// Before "dfctl task", which removes the task these listings look for.
describe("dfctl endpoint discovery", () => {
  const listsTask = (r: { status: number | null; stdout: string; stderr: string }) => {
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${taskId}\\s+6291456`, "m"));
  };

  it("uses the socket in .damselfly/endpoint.json, here or in a parent directory, with no flags", async () => {
    const proj = upProject(daemon.socketPath);
    listsTask(await run(["task", "ls"], { cwd: proj }));
    const deep = join(proj, "src", "deep");
    mkdirSync(deep, { recursive: true });
    listsTask(await run(["task", "ls"], { cwd: deep }));
  });

  it("resolves a relative -e or DAMSELFLY_ENDPOINT against the working directory", async () => {
    const cwd = dirname(daemon.socketPath);
    listsTask(await run(["-e", "dfdaemon.sock", "task", "ls"], { cwd }));
    listsTask(await run(["-e", "./sub/../dfdaemon.sock", "task", "ls"], { cwd }));
    listsTask(await run(["task", "ls"], { cwd, env: { DAMSELFLY_ENDPOINT: "dfdaemon.sock" } }));
  });

  it("prefers -e and DAMSELFLY_ENDPOINT over endpoint.json", async () => {
    const proj = upProject(join(tempDir("elsewhere"), "dfdaemon.sock"));
    listsTask(await run(["-e", daemon.socketPath, "task", "ls"], { cwd: proj }));
    listsTask(await run(["task", "ls"], { cwd: proj, env: { DAMSELFLY_ENDPOINT: daemon.socketPath } }));
  });

  it("names the socket it tried and how it found it when nothing answers there", async () => {
    const cwd = tempDir("no-daemon");
    const rel = await run(["-e", "missing.sock", "task", "ls"], { cwd });
    expect(rel.status).not.toBe(0);
    expect(rel.stderr).toBe(`dfctl: cannot reach the dfdaemon at ${join(cwd, "missing.sock")} (given by -e/--endpoint; is it running? pass -e SOCKET or set DAMSELFLY_ENDPOINT)\n`);
    const env = await run(["task", "ls"], { cwd, env: { DAMSELFLY_ENDPOINT: "/nonexistent/env.sock" } });
    expect(env.stderr).toBe("dfctl: cannot reach the dfdaemon at /nonexistent/env.sock (from $DAMSELFLY_ENDPOINT; is it running? pass -e SOCKET or set DAMSELFLY_ENDPOINT)\n");
    // A file where the socket should be: the path exists, so this is grpc's UNAVAILABLE.
    const stale = join(tempDir("stale"), "dfdaemon.sock");
    writeFileSync(stale, "");
    const up = await run(["task", "ls"], { cwd: upProject(stale) });
    expect(up.status).not.toBe(0);
    expect(up.stderr).toBe(`dfctl: cannot reach the dfdaemon at ${stale} (found via .damselfly/endpoint.json; is it running? pass -e SOCKET or set DAMSELFLY_ENDPOINT)\n`);
  });
});

describe("dfctl task", () => {
  it("lists and shows the tasks the daemon holds", async () => {
    const ls = await dfctl("task", "ls");
    expect(ls.status).toBe(0);
    expect(ls.stdout).toMatch(new RegExp(`^TASK ID .*\\n${taskId}\\s+6291456\\s+4194304\\s+Succeeded`, "m"));
    const stat = await dfctl("task", "stat", taskId);
    expect(JSON.parse(stat.stdout)).toMatchObject({ taskId, contentLength: 6291456 });
  });

  it("removes a task, and says so clearly when it is not there", async () => {
    expect((await dfctl("task", "rm", taskId)).stdout).toBe(`deleted ${taskId}\n`);
    expect(daemon.storage.get(taskId)).toBeUndefined();
    const again = await dfctl("task", "rm", taskId);
    expect(again.status).not.toBe(0);
    expect(again.stderr.trim()).toBe(`dfctl: task ${taskId} not found`);
    const bad = await dfctl("task", "stat", "../../etc");
    expect(bad.stderr.trim()).toMatch(/^dfctl: invalid task id/);
  });

  it("explains an unreachable daemon", async () => {
    const r = await run(["-e", "/nonexistent/dfdaemon.sock", "task", "ls"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim()).toBe("dfctl: cannot reach the dfdaemon at /nonexistent/dfdaemon.sock (given by -e/--endpoint; is it running? pass -e SOCKET or set DAMSELFLY_ENDPOINT)");
  });
});
