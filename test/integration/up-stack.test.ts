// `damselfly up` as a newcomer runs it: a child process, wait for `ready`, run the printed
// dfget example as printed (demo origin) and against a local origin, Ctrl-C, nothing left
// running; a second `up` in the same directory keeps the database and the peers' caches.
// The stack runs mTLS (issue #21): a plaintext gRPC client of its manager or scheduler is
// refused, one with a certificate of the stack's CA is served.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata, status, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthClient } from "../../src/common/grpc/health.js";
import { channelCredentials, loadTls } from "../../src/common/grpc/tls.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";

const root = join(import.meta.dirname, "..", "..");
const tsx = join(root, "node_modules", "tsx", "dist", "loader.mjs");

interface Up {
  proc: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

function startUp(dataDir: string): Up {
  const proc = spawn(process.execPath, ["--import", tsx, join(root, "src", "up", "launch.ts"), "up", "--data-dir", dataDir], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  proc.stderr?.on("data", (b: Buffer) => (out += b.toString()));
  const exit = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  return { proc, output: () => out, exit };
}

async function waitFor(up: Up, pattern: RegExp, timeoutMs = 150_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(up.output())) {
    if (up.proc.exitCode !== null) throw new Error(`up exited (${up.proc.exitCode}) before ${pattern}:\n${up.output()}`);
    if (Date.now() > deadline) throw new Error(`no ${pattern} after ${timeoutMs} ms:\n${up.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return up.output();
}

/** The printed example as an argv (the printer quotes only words with special characters). */
function exampleArgs(banner: string): string[] {
  const line = banner.split("\n").find((l) => /dfget .* -e /.test(l));
  if (!line) throw new Error(`no dfget example in:\n${banner}`);
  return line.trim().split(/\s+/);
}

/** Asynchronous: the test's own origin serves from this process's event loop meanwhile. */
async function runDfget(argv: string[], cwd: string): Promise<void> {
  expect(argv[0]).toBe("node");
  const p = spawn(process.execPath, argv.slice(1), { cwd, stdio: ["ignore", "ignore", "pipe"], timeout: 120_000 });
  let err = "";
  p.stderr?.on("data", (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((r) => p.once("exit", (c) => r(c)));
  if (code !== 0) throw new Error(`dfget failed (${code}): ${err}`);
}

/** The gRPC health status code of `service` at `addr` (OK when serving), or the call's error code. */
function healthCode(addr: string, service: string, creds: ChannelCredentials): Promise<number> {
  const c = new HealthClient(addr, creds);
  return new Promise<number>((r) => c.check({ service }, new Metadata(), { deadline: Date.now() + 5000 }, (e: ServiceError | null) => r(e ? e.code : status.OK))).finally(() => c.close());
}

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

/** Processes whose command line mentions the data dir: the components of that `up`. */
function processesUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, "utf8").includes(dir)) pids.push(Number(p));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

async function isListening(port: number): Promise<boolean> {
  const s: Server = createServer();
  return new Promise((r) => {
    s.once("error", () => r(true));
    s.listen(port, "127.0.0.1", () => s.close(() => r(false)));
  });
}

describe("damselfly up", () => {
  const work = mkdtempSync(join(tmpdir(), "up-"));
  // The default name, so that the CLIs run in `work` find this stack as they would after npm start.
  const dataDir = join(work, ".damselfly");
  let origin: Origin;
  let blocker: Server;
  let blockedPort = 0;

  beforeAll(async () => {
    origin = await startOrigin(makeContent(12 * 1024 * 1024, 11));
    // Hold the manager's default REST port (if nobody else does) to see the fallback.
    blocker = createServer();
    await new Promise<void>((r) => {
      blocker.once("error", () => r());
      blocker.listen(8080, "127.0.0.1", () => {
        blockedPort = 8080;
        r();
      });
    });
  });

  afterAll(async () => {
    await origin?.close();
    await new Promise<void>((r) => (blockedPort ? blocker.close(() => r()) : r()));
    rmSync(work, { recursive: true, force: true });
  });

  let password = "";

  it("starts everything, runs the printed dfget example, and stops everything on Ctrl-C", async () => {
    const up = startUp(dataDir);
    try {
      const banner = await waitFor(up, /ready/);
      const api = /REST API\s+(http:\/\/127\.0\.0\.1:(\d+))\/api\/v1/.exec(banner);
      expect(api).not.toBeNull();
      // 8080 was taken (by us or by someone else): another port, printed for real.
      expect(Number(api?.[2])).not.toBe(8080);
      expect((await fetch(`${api?.[1]}/healthy`)).status).toBe(200);
      const cred = /password in (\S+)/.exec(banner)?.[1] ?? "";
      expect(cred).toBe(join(dataDir, "manager", "initial-root-password"));
      password = readFileSync(cred, "utf8");
      expect(password.trim().length).toBeGreaterThanOrEqual(8);

      // Every URL the banner names outside its copy-paste commands answers 200.
      const urls = banner
        .split("\n")
        .filter((l) => !l.startsWith("  "))
        .flatMap((l) => [...l.matchAll(/https?:\/\/[^\s)]+/g)].map((m) => m[0]));
      expect(urls).toEqual(expect.arrayContaining([`${api?.[1]}/api/v1`, `${api?.[1]}/swagger/`]));
      for (const u of urls) expect((await fetch(u)).status, u).toBe(200);
      // The first peer is the registry mirror; its init line needs no flag at Dragonfly's port.
      const mirror = Number(/^mirror\s+127\.0\.0\.1:(\d+) \(registry mirror and HTTP proxy on peer-1\)/m.exec(banner)?.[1]);
      expect(mirror).toBeGreaterThan(0);
      const init = banner.split("\n").find((l) => / init containerd/.test(l)) ?? "";
      expect(init.trim().endsWith(mirror === 4001 ? "init containerd" : `init containerd --proxy-addr http://127.0.0.1:${mirror}`), init).toBe(true);
      const v2 = await fetch(`http://127.0.0.1:${mirror}/v2/`, { headers: { "x-dragonfly-registry": origin.url() } });
      expect(v2.headers.get("x-dragonfly-error-type"), "the proxy answered, not something else on the port").not.toBe("proxy");

      // mTLS: plaintext clients are refused by the manager and the scheduler; a certificate of
      // the stack's CA (in <data dir>/pki) is served. The dfget example above talks to its peer
      // over the unix socket and needs none.
      expect(banner).toMatch(new RegExp(`^mTLS .*${join(dataDir, "pki", "ca.pem")}`, "m"));
      const grpcAddrs = { "manager.v2.Manager": /^manager\s+gRPC (\S+),/m.exec(banner)?.[1] ?? "", "scheduler.v2.Scheduler": /^scheduler\s+gRPC (\S+),/m.exec(banner)?.[1] ?? "" };
      const tls = loadTls({ caCert: join(dataDir, "pki", "ca.pem"), cert: join(dataDir, "pki", "peer-1.pem"), key: join(dataDir, "pki", "peer-1-key.pem") }, "peer-1");
      for (const [service, addr] of Object.entries(grpcAddrs)) {
        expect(addr, service).toMatch(/^127\.0\.0\.1:\d+$/);
        expect(await healthCode(addr, service, credentials.createInsecure()), `plaintext ${service}`).toBe(status.UNAVAILABLE);
        expect(await healthCode(addr, service, channelCredentials(tls, [service.startsWith("manager") ? "manager" : "scheduler"])), `mTLS ${service}`).toBe(status.OK);
      }

      // dfctl and dfcache need no flag in the directory holding the data dir (.damselfly).
      const ls = spawnSync(process.execPath, ["--import", tsx, join(root, "src", "up", "launch.ts"), "dfctl", "task", "ls", "--json"], { cwd: work, encoding: "utf8" });
      expect(ls.status, ls.stderr).toBe(0);
      expect(JSON.parse(ls.stdout)).toEqual([]);

      // Exactly as printed: the demo file, verified by its digest.
      const args = exampleArgs(banner);
      await runDfget(args, work);
      const demoSha = /sha256 ([0-9a-f]{64})\)/.exec(banner)?.[1];
      expect(sha256(join(work, "demo.bin"))).toBe(demoSha);

      // The same command against another origin: P2P through the peer (seed peer fetches).
      const url = args.findIndex((a) => a.startsWith("http://"));
      const own = [...args];
      own[url] = origin.url();
      own.splice(own.indexOf("--digest"), 2);
      own[own.indexOf("-O") + 1] = join(work, "own.bin");
      await runDfget(own, work);
      expect(sha256(join(work, "own.bin"))).toBe(origin.sha256);
      expect(origin.bytesServed).toBeGreaterThanOrEqual(origin.content.length);
      expect(origin.bytesServed).toBeLessThanOrEqual(1.1 * origin.content.length);

      const tasks = JSON.parse(spawnSync(process.execPath, ["--import", tsx, join(root, "src", "up", "launch.ts"), "dfctl", "task", "ls", "--json"], { cwd: work, encoding: "utf8" }).stdout) as Array<{ taskId: string }>;
      expect(tasks.length).toBe(2);
      const stat = spawnSync(process.execPath, ["--import", tsx, join(root, "src", "up", "launch.ts"), "dfcache", "stat", tasks[0]?.taskId ?? ""], { cwd: work, encoding: "utf8" });
      expect(stat.status, stat.stderr).toBe(0);
      expect(JSON.parse(stat.stdout)).toMatchObject({ id: tasks[0]?.taskId, state: "Succeeded" });

      // A preheat of the demo origin: loopback is allowed for the stack `up` started.
      const signin = await fetch(`${api?.[1]}/api/v1/users/signin`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "root", password: password.trim() }) });
      expect(signin.status).toBe(200);
      const auth = { authorization: `Bearer ${((await signin.json()) as { token: string }).token}`, "content-type": "application/json" };
      const demoUrl = /^demo origin\s+(\S+)/m.exec(banner)?.[1] ?? "";
      const created = await fetch(`${api?.[1]}/api/v1/jobs`, { method: "POST", headers: auth, body: JSON.stringify({ type: "preheat", args: { type: "file", url: demoUrl }, scheduler_cluster_ids: [1] }) });
      expect(created.status, await created.clone().text()).toBe(200);
      const jobId = ((await created.json()) as { id: number }).id;
      await expect
        .poll(async () => ((await (await fetch(`${api?.[1]}/api/v1/jobs/${jobId}`, { headers: auth })).json()) as { state: string }).state, { timeout: 60_000, interval: 250 })
        .toBe("SUCCESS");

      expect(processesUsing(dataDir).length).toBeGreaterThanOrEqual(4);
      const healthPorts = [...banner.matchAll(/health :(\d+)/g)].map((m) => Number(m[1]));
      expect(healthPorts).toHaveLength(2);

      up.proc.kill("SIGINT");
      expect(await up.exit).toBe(0);
      expect(up.output()).toMatch(/stopped/);
      expect(processesUsing(dataDir)).toEqual([]);
      for (const p of [...healthPorts, Number(api?.[2])]) expect(await isListening(p)).toBe(false);
      expect(existsSync(join(dataDir, "peer-1", "dfdaemon.sock"))).toBe(false);
      expect(existsSync(join(dataDir, "up.pid"))).toBe(false);
      expect(existsSync(join(dataDir, "endpoint.json"))).toBe(false);
    } finally {
      up.proc.kill("SIGKILL");
    }
  });

  it("a second up in the same directory reuses the database and the peers' caches", async () => {
    const up = startUp(dataDir);
    try {
      const banner = await waitFor(up, /ready/);
      // Same root account: the password file was not regenerated.
      expect(readFileSync(join(dataDir, "manager", "initial-root-password"), "utf8")).toBe(password);
      // A third `up` on the same directory is refused while this one runs.
      const third = startUp(dataDir);
      expect(await third.exit).not.toBe(0);
      expect(third.output()).toMatch(/another damselfly up/);

      const served = origin.bytesServed;
      const args = exampleArgs(banner);
      args[args.findIndex((a) => a.startsWith("http://"))] = origin.url();
      args.splice(args.indexOf("--digest"), 2);
      args[args.indexOf("-O") + 1] = join(work, "again.bin");
      await runDfget(args, work);
      expect(sha256(join(work, "again.bin"))).toBe(origin.sha256);
      // Served from the peer's cache kept on disk: not one more byte from the origin.
      expect(origin.bytesServed).toBe(served);

      up.proc.kill("SIGTERM");
      expect(await up.exit).toBe(0);
      expect(processesUsing(dataDir)).toEqual([]);
    } finally {
      up.proc.kill("SIGKILL");
    }
  });

  it("refuses a bad --peers with a clear message", () => {
    const r = spawnSync(process.execPath, ["--import", tsx, join(root, "src", "up", "launch.ts"), "up", "--data-dir", join(work, "x"), "--peers", "zero"], { cwd: root, encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--peers: "zero" is not a number of peers/);
  });
});
