// How dfget, dfctl and dfcache pick their dfdaemon socket: -e, then $DAMSELFLY_ENDPOINT, then the
// endpoint.json of a live `damselfly up` here or above, then Dragonfly's default.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SOCKET_PATH } from "../../src/daemon/constants.js";
import {
  daemonCallError,
  daemonTarget,
  discoverEndpoint,
  processAlive,
  readUpEndpoint,
  unreachableError,
  UP_ENDPOINT_FILE,
  type UpEndpoint,
} from "../../src/cli/endpoint.js";

let root: string;
/** A pid that existed and has exited (reaped by spawnSync). */
let deadPid: number;

function upFile(dir: string): string {
  return join(dir, ".damselfly", UP_ENDPOINT_FILE);
}

/** Writes `<dir>/.damselfly/endpoint.json` as `damselfly up` does; returns its path. */
function writeUp(dir: string, over: Partial<Record<keyof UpEndpoint, unknown>> = {}): string {
  const file = upFile(dir);
  mkdirSync(dirname(file), { recursive: true });
  const data = { pid: process.pid, dataDir: join(dir, ".damselfly"), socket: join(dir, ".damselfly", "peer-1", "dfdaemon.sock"), proxy: "http://127.0.0.1:4001", manager: "http://127.0.0.1:8080", ...over };
  writeFileSync(file, JSON.stringify(data));
  return file;
}

function fresh(name: string): string {
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  return d;
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "cli-endpoint-"));
  const r = spawnSync(process.execPath, ["-e", ""]);
  deadPid = r.pid ?? 0;
  // The walk goes up to /: a live `up` above the temp dir would make these results differ.
  expect(readUpEndpoint(dirname(root)), `a running damselfly up is visible from ${dirname(root)}`).toBeUndefined();
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("discoverEndpoint order", () => {
  it("prefers -e, then $DAMSELFLY_ENDPOINT, then a running up, then the default", () => {
    const proj = fresh("order");
    const file = writeUp(proj);
    const up = join(proj, ".damselfly", "peer-1", "dfdaemon.sock");
    const env = { DAMSELFLY_ENDPOINT: "/env/dfdaemon.sock" };
    expect(discoverEndpoint({ flag: "/flag/dfdaemon.sock", env, cwd: proj })).toEqual({ socket: "/flag/dfdaemon.sock", source: "flag" });
    expect(discoverEndpoint({ env, cwd: proj })).toEqual({ socket: "/env/dfdaemon.sock", source: "env" });
    expect(discoverEndpoint({ env: {}, cwd: proj })).toEqual({ socket: up, source: "up", upFile: file });
    expect(discoverEndpoint({ env: {}, cwd: fresh("elsewhere") })).toEqual({ socket: DEFAULT_SOCKET_PATH, source: "default" });
  });

  it("treats an empty $DAMSELFLY_ENDPOINT as unset", () => {
    expect(discoverEndpoint({ env: { DAMSELFLY_ENDPOINT: "" }, cwd: fresh("empty-env") }).source).toBe("default");
  });

  it("reads process.env when no env is passed", () => {
    const before = process.env.DAMSELFLY_ENDPOINT;
    process.env.DAMSELFLY_ENDPOINT = "/from/process.sock";
    try {
      expect(discoverEndpoint({ cwd: fresh("process-env") })).toEqual({ socket: "/from/process.sock", source: "env" });
    } finally {
      if (before === undefined) delete process.env.DAMSELFLY_ENDPOINT;
      else process.env.DAMSELFLY_ENDPOINT = before;
    }
  });
});

describe("relative sockets", () => {
  it("resolves -e and $DAMSELFLY_ENDPOINT against the working directory", () => {
    const cwd = fresh("rel/a/b");
    expect(discoverEndpoint({ flag: "dfdaemon.sock", env: {}, cwd }).socket).toBe(join(cwd, "dfdaemon.sock"));
    expect(discoverEndpoint({ flag: "../x/./d.sock", env: {}, cwd }).socket).toBe(join(root, "rel", "a", "x", "d.sock"));
    expect(discoverEndpoint({ env: { DAMSELFLY_ENDPOINT: "./e.sock" }, cwd }).socket).toBe(join(cwd, "e.sock"));
  });

  it("gives grpc an absolute unix target (unix://rel would read rel as an authority)", () => {
    expect(daemonTarget("/run/d.sock")).toBe("unix:///run/d.sock");
    expect(daemonTarget("d.sock")).toBe(`unix://${join(process.cwd(), "d.sock")}`);
  });
});

describe("the endpoint.json walk", () => {
  it("finds the file in the nearest parent directory, up from nested directories", () => {
    const outer = fresh("walk");
    const inner = fresh("walk/proj");
    writeUp(outer, { socket: "/outer.sock" });
    writeUp(inner, { socket: "/inner.sock" });
    expect(readUpEndpoint(fresh("walk/proj/src/deep"))?.socket).toBe("/inner.sock");
    expect(readUpEndpoint(inner)?.socket).toBe("/inner.sock");
    expect(readUpEndpoint(fresh("walk/other/deep"))?.socket).toBe("/outer.sock");
    expect(discoverEndpoint({ env: {}, cwd: join(inner, "src", "deep") }).upFile).toBe(upFile(inner));
  });

  it("returns the file's fields, typed", () => {
    const dir = fresh("fields");
    writeUp(dir);
    expect(readUpEndpoint(dir)).toEqual({ pid: process.pid, dataDir: join(dir, ".damselfly"), socket: join(dir, ".damselfly", "peer-1", "dfdaemon.sock"), proxy: "http://127.0.0.1:4001", manager: "http://127.0.0.1:8080" });
  });

  it("ignores a file whose up process is gone, and keeps walking", () => {
    expect(processAlive(process.pid)).toBe(true);
    expect(processAlive(deadPid)).toBe(false);
    const outer = fresh("dead");
    const inner = fresh("dead/proj");
    writeUp(inner, { pid: deadPid, socket: "/stale.sock" });
    expect(readUpEndpoint(inner)).toBeUndefined();
    expect(discoverEndpoint({ env: {}, cwd: inner }).source).toBe("default");
    writeUp(outer, { socket: "/live.sock" });
    expect(readUpEndpoint(inner)?.socket).toBe("/live.sock");
  });

  // Every case has this process's (live) pid unless it breaks the pid, so only the content can
  // make the file be ignored.
  const ok = { pid: process.pid, dataDir: "/d", socket: "/d.sock", proxy: "http://127.0.0.1:1", manager: "http://127.0.0.1:2" };
  const malformed: Array<[string, string]> = [
    ["not JSON", "{pid: 1"],
    ["a half-written file", JSON.stringify(ok).slice(0, -10)],
    ["an array", "[]"],
    ["null", "null"],
    ["a missing socket", JSON.stringify({ ...ok, socket: undefined })],
    ["a relative socket", JSON.stringify({ ...ok, socket: "d.sock" })],
    ["a relative dataDir", JSON.stringify({ ...ok, dataDir: "d" })],
    ["a pid as a string", JSON.stringify({ ...ok, pid: String(process.pid) })],
    ["pid 0 (kill(0) would probe the process group)", JSON.stringify({ ...ok, pid: 0 })],
    ["a fractional pid", JSON.stringify({ ...ok, pid: process.pid + 0.5 })],
    ["a proxy that is not a URL", JSON.stringify({ ...ok, proxy: "127.0.0.1:1" })],
    ["a missing manager", JSON.stringify({ ...ok, manager: undefined })],
  ];
  it.each(malformed)("ignores a file with %s", (_name, text) => {
    const dir = fresh(`bad-${Math.random().toString(16).slice(2)}`);
    writeFileSync(writeUp(dir), text);
    expect(readUpEndpoint(dir)).toBeUndefined();
    // The same file well-formed is found, so the content is what made the difference.
    writeFileSync(upFile(dir), JSON.stringify(ok));
    expect(readUpEndpoint(dir)).toEqual(ok);
  });

  it("ignores a directory where the file should be", () => {
    const dir = fresh("isdir");
    mkdirSync(upFile(dir), { recursive: true });
    expect(readUpEndpoint(dir)).toBeUndefined();
  });
});

describe("errors", () => {
  const serviceError = (code: status, details: string, meta: Record<string, string> = {}): ServiceError => {
    const metadata = new Metadata();
    for (const [k, v] of Object.entries(meta)) metadata.set(k, v);
    return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata });
  };

  it("names the socket and how it was chosen", () => {
    expect(unreachableError({ socket: "/x/d.sock", source: "flag" }).message).toBe(
      "cannot reach the dfdaemon at /x/d.sock (given by -e/--endpoint; is it running? pass -e SOCKET or set DAMSELFLY_ENDPOINT)",
    );
    expect(unreachableError({ socket: "/x/d.sock", source: "env" }).message).toMatch(/^cannot reach the dfdaemon at \/x\/d\.sock \(from \$DAMSELFLY_ENDPOINT;/);
    expect(unreachableError({ socket: DEFAULT_SOCKET_PATH, source: "default" }).message).toMatch(new RegExp(`at ${DEFAULT_SOCKET_PATH} \\(the default: no -e`));
    // Shown relative to cwd, as the user would type it.
    const file = join(process.cwd(), ".damselfly", UP_ENDPOINT_FILE);
    expect(unreachableError({ socket: "/s.sock", source: "up", upFile: file }).message).toMatch(/^cannot reach the dfdaemon at \/s\.sock \(found via \.damselfly\/endpoint\.json; is it running\?/);
  });

  it("calls a locally made UNAVAILABLE unreachable, but shows the daemon's own UNAVAILABLE answers", () => {
    const ep = { socket: "/x/d.sock", source: "env" } as const;
    expect(daemonCallError(serviceError(status.UNAVAILABLE, "No connection established. Last error: connect ENOENT /x/d.sock"), ep).message).toMatch(/^cannot reach the dfdaemon at \/x\/d\.sock /);
    const answered = serviceError(status.UNAVAILABLE, "cannot download: the swarm could not serve the task and back-to-source is disabled", { "x-dragonfly-error-type": "dfdaemon" });
    expect(daemonCallError(answered, ep).message).toBe("cannot download: the swarm could not serve the task and back-to-source is disabled");
    expect(daemonCallError(serviceError(status.NOT_FOUND, "task abc not found"), ep).message).toBe("task abc not found");
    // A daemon dfget started itself has no discovery to explain.
    expect(daemonCallError(serviceError(status.UNAVAILABLE, "Connection dropped"), undefined).message).toBe("Connection dropped");
  });
});
