// dfctl against a running daemon: list, stat and remove local tasks; clear errors otherwise.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, startTestDaemon, tempDir } from "../helpers/swarm.js";

const bin = new URL("../../bin/dfctl.js", import.meta.url).pathname;
let origin: Origin;
let daemon: DaemonHandle;
let taskId: string;

// Asynchronous: the daemon runs in this process and must keep serving while dfctl runs.
function run(args: string[], withBin = false): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, withBin ? args : [bin, ...args]);
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    p.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}
const dfctl = (...args: string[]) => run(["-e", daemon.socketPath, ...args]);

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
  const dfcache = (...args: string[]) => run([new URL("../../bin/dfcache.js", import.meta.url).pathname, "-e", daemon.socketPath, ...args], true);

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
    expect(r.stderr.trim()).toBe("dfctl: cannot reach the dfdaemon (is it running? see --endpoint)");
  });
});
