// The process tree of `damselfly up`: manager (PGlite), scheduler (registered with the manager),
// one seed peer and N peers, each a child process with its own ports and directory under the
// data dir, started in dependency order and health-checked from the outside. Child processes
// rather than one process: Ctrl-C stops them in order (peers, seed peer, scheduler, manager), a
// crash of one is seen and reported, and each one can be killed on its own to try failures.
import { fork, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Metadata, type ChannelCredentials } from "@grpc/grpc-js";
import { stringify } from "yaml";
import { HealthClient } from "../common/grpc/health.js";
import { channelCredentials, loadTls, type TlsFiles } from "../common/grpc/tls.js";
import { HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health.js";
import { processAlive, UP_ENDPOINT_FILE, type UpEndpoint } from "../cli/endpoint.js";
import { INITIAL_PASSWORD_FILE } from "../manager/auth/bootstrap.js";
import { ensureDemoFile, startDemoOrigin, type DemoOrigin } from "./demo-origin.js";
import { stackCertificates } from "./pki.js";
import { PortPlan } from "./ports.js";
import { isChildMessage, type ChildMessage, type ComponentRole, type DaemonPorts, type ManagerPorts, type SchedulerPorts } from "./protocol.js";

export interface StackOptions {
  dataDir: string;
  /** Peers besides the seed peer. */
  peers: number;
  /** Milliseconds each component may take to become healthy. */
  startTimeoutMs?: number;
  /** Progress lines while starting ("starting scheduler ..."). */
  onProgress?: (line: string) => void;
  /** Aborting stops whatever was started and rejects. */
  signal?: AbortSignal;
  /** Preferred ports (Dragonfly's defaults); tests pass 0 to take free ones. */
  preferDefaultPorts?: boolean;
  /**
   * Extra dfdaemon config sections for every peer and the seed peer (e.g. `gc`), for runs that
   * need another policy than the defaults (the soak run collects tasks within seconds).
   */
  daemonConfig?: Record<string, unknown>;
  /** The manager's webhook.maxAttempts (default 8, 30 s apart): tests that need a delivery to give up set 1. */
  webhookMaxAttempts?: number;
  /**
   * gRPC in plaintext, as a Dragonfly cluster without certificates runs. By default the stack
   * runs mTLS: a cluster CA in <data dir>/pki and a certificate per component.
   */
  plaintext?: boolean;
}

export interface DaemonInfo {
  name: string;
  seed: boolean;
  dir: string;
  hostId: string;
  socketPath: string;
  ports: DaemonPorts;
  pid: number;
}

export interface Stack {
  dataDir: string;
  /** The registry mirror (HTTP proxy) of the first peer, as runtimes reach it. */
  mirror: { url: string; peer: string };
  /** `damselfly init containerd` exactly as it points containerd at `mirror`. */
  initContainerdCommand: string;
  /** Where the CLIs (dfget, dfctl, dfcache) find this stack's first peer. */
  endpointFile: string;
  /** `consoleUrl`: where the manager serves the web console; undefined when it is not built. */
  manager: { ports: ManagerPorts; apiUrl: string; consoleUrl: string | undefined; credentialsFile: string | undefined; pid: number };
  scheduler: { ports: SchedulerPorts; addr: string; pid: number };
  seed: DaemonInfo;
  peers: DaemonInfo[];
  demo: { url: string; sha256: string; size: number };
  logDir: string;
  /**
   * The stack's certificates by component name ("manager", "scheduler", "seed-peer",
   * "peer-1", ...); undefined when it runs plaintext.
   */
  certificates: Map<string, TlsFiles> | undefined;
  /** A dfget command line that downloads the demo file through the first peer and verifies it. */
  dfgetExample: string;
  /** Resolves when a component exits on its own (the stack is then unhealthy). */
  exited: Promise<{ name: string; code: number | null; signal: NodeJS.Signals | null }>;
  close(): Promise<void>;
}

const here = fileURLToPath(import.meta.url);
const ext = extname(here);
/** The package root (two levels above src/up or dist/up). */
export const packageRoot = resolve(here, "..", "..", "..");
const childScript = join(packageRoot, ext === ".ts" ? "src" : "dist", "up", `child${ext}`);
// From source (tests, `npm run` without a build) the children need the TypeScript loader.
// Its absolute path, so that a command printed for copy-paste works from any directory.
const tsxLoader = pathToFileURL(join(packageRoot, "node_modules", "tsx", "dist", "loader.mjs")).href;
const childExecArgv = ext === ".ts" ? ["--import", tsxLoader] : [];

const DEFAULTS = { managerRest: 8080, managerGrpc: 65003, managerMetrics: 8000, scheduler: 8002, schedulerMetrics: 8001, demo: 8088, proxy: 4001 };
/** `damselfly init containerd` points runtimes here unless told otherwise. */
const DEFAULT_PROXY_URL = `http://127.0.0.1:${DEFAULTS.proxy}`;
/**
 * Everything `up` starts listens on 127.0.0.1, its demo origin included: the manager's and the
 * scheduler's SSRF policy may let preheats reach loopback for this stack only (a manager started
 * on its own keeps refusing loopback).
 */
const LOOPBACK_CIDRS = ["127.0.0.1/32", "::1/128"];
const daemonDefaults = (i: number) => ({ upload: 4000 + 10 * i, metrics: 4002 + 10 * i, health: 4003 + 10 * i, piece: 4005 + 10 * i, quic: 4006 + 10 * i });
// sun_path is 108 bytes on Linux.
const MAX_SOCKET_PATH = 107;

/** Shell-quotes one word for the printed example. */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_/.:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** How to run one of this installation's CLIs: the built one, or the sources through tsx. */
export function cliCommand(cli: "dfget" | "damselfly"): string[] {
  return ext === ".ts" ? ["node", "--import", tsxLoader, join(packageRoot, "src", "up", "launch.ts"), cli] : ["node", join(packageRoot, "bin", `${cli}.js`)];
}

class Component {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitedFlag = false;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((r) =>
      child.once("exit", (code, signal) => {
        this.exitedFlag = true;
        r({ code, signal });
      }),
    );
  }

  get running(): boolean {
    return !this.exitedFlag;
  }

  /** SIGTERM, then SIGKILL if it has not stopped within `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((r) => {
      timer = setTimeout(() => {
        this.child.kill("SIGKILL");
        r();
      }, graceMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    await this.exited;
  }
}

function spawnComponent(name: string, role: ComponentRole, configPath: string, logFile: string, env: NodeJS.ProcessEnv): Component {
  const fd = openSync(logFile, "a", 0o600);
  try {
    const child = fork(childScript, [role, configPath], {
      cwd: packageRoot,
      execArgv: childExecArgv,
      env,
      // Its own process group: the terminal's Ctrl-C reaches `up` only, which then stops the
      // components in order. The IPC channel closing stops an orphaned child.
      detached: true,
      stdio: ["ignore", fd, fd, "ipc"],
    });
    return new Component(name, child);
  } finally {
    closeSync(fd);
  }
}

function waitReady(c: Component, timeoutMs: number, signal: AbortSignal | undefined): Promise<ChildMessage> {
  return new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => done(new Error(`${c.name}: not ready after ${Math.round(timeoutMs / 1000)}s`)), timeoutMs);
    const onMessage = (m: unknown) => {
      if (isChildMessage(m)) done(undefined, m);
    };
    const onExit = (code: number | null, sig: NodeJS.Signals | null) => done(new Error(`${c.name}: exited before it was ready (${sig ?? `code ${code}`})`));
    const onAbort = () => done(new Error("interrupted"));
    const done = (err?: Error, m?: ChildMessage) => {
      clearTimeout(timer);
      c.child.off("message", onMessage);
      c.child.off("exit", onExit);
      signal?.removeEventListener("abort", onAbort);
      if (err) reject(err);
      else resolveReady(m as ChildMessage);
    };
    c.child.on("message", onMessage);
    c.child.once("exit", onExit);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

async function httpHealthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** Whether `url` answers with the console's page (200, HTML), as a browser would open it. */
async function servesConsole(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { headers: { accept: "text/html" }, signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return res.status === 200 && (res.headers.get("content-type") ?? "").startsWith("text/html");
  } catch {
    return false;
  }
}

function grpcServing(addr: string, service: string, creds: ChannelCredentials): Promise<boolean> {
  const client = new HealthClient(addr, creds);
  return new Promise<boolean>((r) => {
    client.check({ service }, new Metadata(), { deadline: Date.now() + 2000 }, (err, res) => r(!err && res.status === HealthCheckResponse_ServingStatus.SERVING));
  }).finally(() => client.close());
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what}: not healthy after ${Math.round(timeoutMs / 1000)}s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** One `up` per data dir: a second one would fight over ports, sockets and the database. */
function takeLock(dataDir: string): () => void {
  const file = join(dataDir, "up.pid");
  if (existsSync(file)) {
    const pid = Number(readFileSync(file, "utf8").trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
      throw new Error(`another damselfly up (pid ${pid}) is running with the data dir ${dataDir}; stop it first or pass another --data-dir`);
    }
  }
  writeFileSync(file, `${process.pid}\n`);
  return () => {
    try {
      if (readFileSync(file, "utf8").trim() === String(process.pid)) rmSync(file, { force: true });
    } catch {
      // already gone
    }
  };
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  if (!Number.isInteger(opts.peers) || opts.peers < 1 || opts.peers > 64) throw new Error(`--peers: ${opts.peers} is not a number of peers from 1 to 64`);
  const dataDir = resolve(opts.dataDir);
  const timeoutMs = opts.startTimeoutMs ?? 120_000;
  const progress = opts.onProgress ?? (() => undefined);
  const prefer = opts.preferDefaultPorts !== false;
  const plan = new PortPlan();
  const port = (p: number) => (prefer ? plan.pick(p) : Promise.resolve(0));
  const names = ["seed-peer", ...Array.from({ length: opts.peers }, (_, i) => `peer-${i + 1}`)];
  for (const n of names) {
    const sock = join(dataDir, n, "dfdaemon.sock");
    if (Buffer.byteLength(sock) > MAX_SOCKET_PATH) throw new Error(`--data-dir: the path is too long for unix sockets (${sock}); use a shorter one`);
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const logDir = join(dataDir, "logs");
  mkdirSync(logDir, { recursive: true });
  const unlock = takeLock(dataDir);
  let certs: Map<string, TlsFiles> | undefined;
  try {
    certs = opts.plaintext
      ? undefined
      : await stackCertificates(join(dataDir, "pki"), [
          { name: "manager", role: "manager" },
          { name: "scheduler", role: "scheduler" },
          ...names.map((name) => ({ name, role: name === "seed-peer" ? ("seed-peer" as const) : ("peer" as const) })),
        ]);
  } catch (e) {
    unlock();
    throw e;
  }
  const tlsOf = (name: string): TlsFiles | undefined => certs?.get(name);

  const components: Component[] = [];
  let demo: DemoOrigin | undefined;
  let removeEndpoint: () => void = () => undefined;
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // First, so that no CLI picks a stopping daemon.
      removeEndpoint();
      // Reverse start order: peers first so that nothing talks to a stopped scheduler.
      const peers = components.filter((c) => c.name.startsWith("peer-"));
      await Promise.all(peers.map((c) => c.stop()));
      for (const c of components.filter((x) => !peers.includes(x)).reverse()) await c.stop();
      await demo?.close();
      unlock();
    })());

  // The manager gets PGlite in its own directory even when DATABASE_URL is set in this shell.
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL;

  const launch = async <M extends ChildMessage>(name: string, role: ComponentRole, dir: string, file: string, config: (fallback: boolean) => Promise<unknown>): Promise<{ msg: M; c: Component }> => {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const configPath = join(dir, file);
    for (const fallback of [false, true]) {
      writeFileSync(configPath, `# written by damselfly up; edits are replaced at the next start\n${stringify(await config(fallback))}`);
      progress(`starting ${name}`);
      const c = spawnComponent(name, role, configPath, join(logDir, `${name}.log`), env);
      components.push(c);
      const msg = await waitReady(c, timeoutMs, opts.signal);
      if (msg.type === "ready") return { msg: msg as M, c };
      await c.exited;
      components.splice(components.indexOf(c), 1);
      // Another process took a port between our probe and the bind: once more on free ports.
      if (!msg.addressInUse || fallback) throw new Error(`${name}: ${msg.message} (log: ${join(logDir, `${name}.log`)})`);
    }
    throw new Error(`${name}: could not start`);
  };

  try {
    const mdir = join(dataDir, "manager");
    const m = await launch<Extract<ChildMessage, { role: "manager" }>>("manager", "manager", mdir, "manager.yaml", async (fb) => {
      const grpcPort = fb ? 0 : await port(DEFAULTS.managerGrpc);
      return {
        server: {
          dataDir: mdir,
          rest: { addr: `127.0.0.1:${fb ? 0 : await port(DEFAULTS.managerRest)}` },
          grpc: { listenIP: "127.0.0.1", advertiseIP: "127.0.0.1", port: { start: grpcPort, end: grpcPort }, tls: tlsOf("manager") },
        },
        metrics: { addr: `127.0.0.1:${fb ? 0 : await port(DEFAULTS.managerMetrics)}` },
        job: { preheat: { ssrf: { allowCIDRs: LOOPBACK_CIDRS } } },
        // Everything of a local stack is on loopback, webhook receivers included.
        webhook: { ssrf: { allowCIDRs: LOOPBACK_CIDRS }, ...(opts.webhookMaxAttempts !== undefined ? { maxAttempts: opts.webhookMaxAttempts } : {}) },
      };
    });
    const apiUrl = `http://127.0.0.1:${m.msg.ports.rest}`;
    await until("manager", () => httpHealthy(`${apiUrl}/healthy`), timeoutMs);
    // Asked, not assumed: the banner prints the console's URL only when it really answers.
    const consoleUrl = (await servesConsole(`${apiUrl}/`)) ? `${apiUrl}/` : undefined;

    const sdir = join(dataDir, "scheduler");
    const s = await launch<Extract<ChildMessage, { role: "scheduler" }>>("scheduler", "scheduler", sdir, "scheduler.yaml", async (fb) => {
      const grpcPort = fb ? 0 : await port(DEFAULTS.scheduler);
      return {
        // advertisePort follows the port: 0 (a free one) announces the port really bound, not 8002.
        server: { listenIP: "127.0.0.1", advertiseIP: "127.0.0.1", port: grpcPort, advertisePort: grpcPort, tls: tlsOf("scheduler") },
        manager: { addr: `127.0.0.1:${m.msg.ports.grpc}`, tls: tlsOf("scheduler"), schedulerClusterID: 1, keepAlive: { interval: "5s" } },
        // The seed trigger calls the seed peer's upload server, which runs mTLS too.
        ...(tlsOf("scheduler") ? { seedPeer: { tls: tlsOf("scheduler") } } : {}),
        metrics: { addr: `127.0.0.1:${fb ? 0 : await port(DEFAULTS.schedulerMetrics)}` },
        job: { preheat: { ssrf: { allowCIDRs: LOOPBACK_CIDRS } } },
      };
    });
    const schedulerAddr = `127.0.0.1:${s.msg.ports.grpc}`;
    // Probed as the manager would call it: with the manager's certificate.
    const probe = channelCredentials(loadTls(tlsOf("manager"), "manager"), ["scheduler"]);
    await until("scheduler", () => grpcServing(schedulerAddr, "scheduler.v2.Scheduler", probe), timeoutMs);

    const daemons: DaemonInfo[] = [];
    for (const [i, name] of names.entries()) {
      const seed = i === 0;
      // The first peer is the registry mirror that `init containerd` points runtimes at.
      const mirror = i === 1;
      const dir = join(dataDir, name);
      const d = daemonDefaults(i);
      const r = await launch<Extract<ChildMessage, { role: "dfdaemon" }>>(name, "dfdaemon", dir, "dfdaemon.yaml", async (fb) => ({
        host: { ip: "127.0.0.1", hostname: name, schedulerClusterID: 1 },
        download: { server: { socketPath: join(dir, "dfdaemon.sock") } },
        // One certificate per daemon for every connection it makes or takes: its upload gRPC
        // server and client, the schedulers, and the vortex piece connections.
        upload: { server: { ip: "127.0.0.1", port: fb ? 0 : await port(d.upload), ...tlsOf(name) }, client: { ...tlsOf(name) } },
        scheduler: { addrs: [schedulerAddr], ...tlsOf(name) },
        seedPeer: { enable: seed },
        storage: { dir, keep: true, server: { ip: "127.0.0.1", tcpPort: fb ? 0 : await port(d.piece), quicPort: fb ? 0 : d.quic, ...(tlsOf(name) ? { tls: tlsOf(name) } : {}) } },
        health: { server: { ip: "127.0.0.1", port: fb ? 0 : await port(d.health) } },
        metrics: { server: { ip: "127.0.0.1", port: fb ? 0 : await port(d.metrics) } },
        // Everything here runs on loopback, the scheduler included, so the seed peer may fetch
        // from loopback origins when the scheduler asks it to (refused by default elsewhere).
        security: { allowedBackToSourceCIDRs: ["127.0.0.0/8", "::1/128"] },
        ...(mirror ? { proxy: { server: { ip: "127.0.0.1", port: fb ? 0 : await port(DEFAULTS.proxy) } } } : {}),
        ...opts.daemonConfig,
      }));
      await until(name, () => httpHealthy(`http://127.0.0.1:${r.msg.ports.health}/healthy`), timeoutMs);
      daemons.push({ name, seed, dir, hostId: r.msg.hostId, socketPath: r.msg.socketPath, ports: r.msg.ports, pid: r.c.child.pid ?? 0 });
    }

    const origin = ensureDemoFile(join(dataDir, "origin"));
    demo = await startDemoOrigin(join(dataDir, "origin"), prefer ? await port(DEFAULTS.demo) : 0).catch(() => startDemoOrigin(join(dataDir, "origin"), 0));
    const seedInfo = daemons[0] as DaemonInfo;
    const first = daemons[1] as DaemonInfo;
    const credentialsFile = join(mdir, INITIAL_PASSWORD_FILE);
    const example = [...cliCommand("dfget"), demo.url(), "-O", "./demo.bin", "--overwrite", "--digest", `sha256:${origin.sha256}`, "-e", first.socketPath].map(shellWord).join(" ");
    const mirrorUrl = `http://127.0.0.1:${first.ports.proxy}`;
    // The default --proxy-addr is Dragonfly's 4001: the flag appears only when another port was taken.
    const initContainerd = [...cliCommand("damselfly"), "init", "containerd", ...(mirrorUrl === DEFAULT_PROXY_URL ? [] : ["--proxy-addr", mirrorUrl])].map(shellWord).join(" ");
    const endpointFile = join(dataDir, UP_ENDPOINT_FILE);
    const endpoint: UpEndpoint = { pid: process.pid, dataDir, socket: first.socketPath, proxy: mirrorUrl, manager: apiUrl };
    writeFileSync(endpointFile, `${JSON.stringify(endpoint, null, 2)}\n`, { mode: 0o600 });
    removeEndpoint = () => rmSync(endpointFile, { force: true });

    const exited = Promise.race(components.map((c) => c.exited.then((e) => ({ name: c.name, ...e }))));
    return {
      dataDir,
      mirror: { url: mirrorUrl, peer: first.name },
      initContainerdCommand: initContainerd,
      endpointFile,
      manager: { ports: m.msg.ports, apiUrl, consoleUrl, credentialsFile: existsSync(credentialsFile) ? credentialsFile : undefined, pid: m.c.child.pid ?? 0 },
      scheduler: { ports: s.msg.ports, addr: schedulerAddr, pid: s.c.child.pid ?? 0 },
      seed: seedInfo,
      peers: daemons.slice(1),
      demo: { url: demo.url(), sha256: origin.sha256, size: origin.size },
      certificates: certs,
      logDir,
      dfgetExample: example,
      exited,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
