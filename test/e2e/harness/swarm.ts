// A many-host swarm on one machine: nginx as the origin, the manager, the scheduler, a seed
// peer and N peers, each in its own network namespace behind a rate-limited link (see
// netns.ts), each a real process started from its CLI with a generated Dragonfly-style YAML
// config. Downloads go through each peer's unix socket as dfget does (a unix socket is a file,
// reachable from the test process without touching the emulated network); direct downloads run
// curl inside a host's namespace. Counts what the origin sent (nginx access log) and each
// host's link counters, and removes every namespace and process it made, also after a failure.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { stringify } from "yaml";
import type { TlsFiles } from "../../../src/common/grpc/tls.js";
import { stackCertificates } from "../../../src/up/pki.js";
import { Download, TaskType } from "../../../src/gen/common/v2/common.js";
import { DfdaemonDownloadClient, type DownloadTaskResponse } from "../../../src/gen/dfdaemon/v2/dfdaemon.js";
import { dragonflyBinDir, dragonflyDaemonConfig } from "../../helpers/dragonfly.js";
import { cleanupStaleNamespaces, EmulatedNetwork, netnsSupport, nsExec, SUBNET, type LinkQueue, type NetHost } from "./netns.js";

export { netnsSupport };

const root = join(import.meta.dirname, "..", "..", "..");
const tsxLoader = pathToFileURL(join(root, "node_modules", "tsx", "dist", "loader.mjs")).href;

/** Node arguments that run one of our CLIs: the built bin/ (DAMSELFLY_E2E_DIST=1) or the sources. */
function cliArgs(cli: "dfdaemon" | "damselfly"): string[] {
  if (process.env.DAMSELFLY_E2E_DIST === "1") return [join(root, "bin", `${cli}.js`)];
  return ["--import", tsxLoader, join(root, "src", "up", "launch.ts"), cli];
}

export interface SwarmFile {
  name: string;
  size: number;
}

export interface SwarmOptions {
  workDir: string;
  peers: number;
  files: SwarmFile[];
  /** Each link's rate in each direction (default 100 Mbit/s). */
  mbit?: number;
  delayMs?: number;
  /** How links queue what exceeds their rate (see LinkQueue; default "sparse-first"). */
  queue?: LinkQueue;
  /** Start the manager too (the scheduler then registers with it). Default true. */
  manager?: boolean;
  log?: (msg: string) => void;
  /** Extra dfdaemon.yaml keys for every daemon (merged at the top level). */
  daemonConfig?: Record<string, unknown>;
  /** Extra keys of scheduler.yaml's `scheduler` section (e.g. candidateParentLimit). */
  schedulerConfig?: Record<string, unknown>;
  /**
   * Whose daemons: ours (default), Dragonfly's published client for the seed and every peer, or
   * mixed (the seed and odd peers ours, even peers Dragonfly's). Always under our scheduler and
   * manager; Dragonfly's daemons find the scheduler through the manager.
   */
  peerImpl?: PeerImpl;
  /**
   * mTLS everywhere (issue 21): the manager's and scheduler's gRPC, the daemons' upload gRPC
   * and their piece connections, with certificates from one CA naming each host's address.
   * Our daemons only.
   */
  tls?: boolean;
}

export type PeerImpl = "damselfly" | "dragonfly" | "mixed";

/** Which client runs daemon `index` (0 = the seed) under `impl`. */
export function daemonImpl(impl: PeerImpl, index: number): "damselfly" | "dragonfly" {
  if (impl === "dragonfly") return "dragonfly";
  if (impl === "mixed") return index > 0 && index % 2 === 0 ? "dragonfly" : "damselfly";
  return "damselfly";
}

export interface Proc {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  running: boolean;
}

export interface DaemonHost {
  name: string;
  seed: boolean;
  impl: "damselfly" | "dragonfly";
  net: NetHost;
  dir: string;
  socketPath: string;
  configPath: string;
  logFile: string;
  proc: Proc | undefined;
}

export interface ProgressSample {
  /** Milliseconds since the download started. */
  t: number;
  bytes: number;
  /** The piece that landed, the parent that served it ("" from the origin) and its cost. */
  piece?: { number: number; parentId: string; costMs: number };
}

export interface DownloadOutcome {
  ok: boolean;
  error?: string;
  ms: number;
  contentLength: number;
  taskId: string;
  samples: ProgressSample[];
}

export interface RunningDownload {
  host: DaemonHost;
  outputPath: string;
  done: Promise<DownloadOutcome>;
  /** Bytes of the pieces landed so far. */
  bytes(): number;
}

export interface OriginFile extends SwarmFile {
  path: string;
  sha256: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Deterministic-enough incompressible content, written in 1 MiB chunks with its SHA-256. */
function writeRandomFile(path: string, size: number): string {
  const hash = createHash("sha256");
  const fd = openSync(path, "w", 0o644);
  try {
    for (let off = 0; off < size; ) {
      const chunk = randomBytes(Math.min(1 << 20, size - off));
      writeSync(fd, chunk);
      hash.update(chunk);
      off += chunk.length;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

export function sha256File(path: string): string {
  const hash = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (let pos = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}


let swarmCount = 0;

export class Swarm {
  readonly net: EmulatedNetwork;
  readonly files = new Map<string, OriginFile>();
  readonly daemons: DaemonHost[] = [];
  readonly procs: Proc[] = [];
  origin!: NetHost;
  scheduler!: NetHost;
  manager: NetHost | undefined;
  schedulerProc: Proc | undefined;
  private nginxLog = "";
  private failFlag = "";
  private readonly logDir: string;
  /** Each host's certificate files by name (opts.tls). */
  private certs: Map<string, TlsFiles> | undefined;
  private readonly exitHook = () => this.destroySync();
  private closed = false;

  private constructor(
    readonly opts: SwarmOptions,
    readonly log: (m: string) => void,
  ) {
    this.logDir = join(opts.workDir, "logs");
    mkdirSync(this.logDir, { recursive: true });
    const stale = cleanupStaleNamespaces();
    if (stale.length > 0) log(`removed ${stale.length} namespaces left by an earlier run`);
    this.net = new EmulatedNetwork({ mbit: opts.mbit ?? 100, delayMs: opts.delayMs ?? 0, queue: opts.queue ?? "sparse-first" }, log, `${swarmCount++}-`);
    process.once("exit", this.exitHook);
  }

  get seed(): DaemonHost {
    return this.daemons[0] as DaemonHost;
  }

  get peers(): DaemonHost[] {
    return this.daemons.slice(1);
  }

  static async start(opts: SwarmOptions): Promise<Swarm> {
    const s = new Swarm(opts, opts.log ?? (() => undefined));
    try {
      await s.boot();
      return s;
    } catch (e) {
      await s.close();
      throw e;
    }
  }

  private async boot(): Promise<void> {
    const o = this.opts;
    this.origin = this.net.addHost("origin");
    if (o.manager !== false) this.manager = this.net.addHost("manager");
    this.scheduler = this.net.addHost("scheduler");
    for (let i = 0; i <= o.peers; i++) {
      const name = i === 0 ? "seed" : `peer${i}`;
      const net = this.net.addHost(name);
      const dir = join(o.workDir, name);
      mkdirSync(dir, { recursive: true });
      this.daemons.push({ name, seed: i === 0, impl: daemonImpl(o.peerImpl ?? "damselfly", i), net, dir, socketPath: join(dir, "dfdaemon.sock"), configPath: join(dir, "dfdaemon.yaml"), logFile: join(this.logDir, `${name}.log`), proc: undefined });
    }
    if (o.tls) {
      if (this.daemons.some((d) => d.impl !== "damselfly")) throw new Error("swarm tls: our daemons only");
      this.certs = await stackCertificates(join(o.workDir, "pki"), [
        ...(this.manager ? [{ name: "manager", role: "manager" as const, addresses: [this.manager.ip] }] : []),
        { name: "scheduler", role: "scheduler", addresses: [this.scheduler.ip] },
        ...this.daemons.map((d) => ({ name: d.name, role: d.seed ? ("seed-peer" as const) : ("peer" as const), addresses: [d.net.ip] })),
      ]);
    }
    this.startOrigin();
    if (this.manager) await this.startManager(this.manager);
    await this.startScheduler();
    await this.startDaemon(this.seed);
    await Promise.all(this.peers.map((d) => this.startDaemon(d)));
    this.log(`swarm up: origin ${this.origin.ip}, scheduler ${this.scheduler.ip}, seed ${this.seed.net.ip}, ${this.peers.length} peers, ${o.mbit ?? 100} Mbit/s links, ${this.net.queue} queues`);
  }

  /** `{ tls: files }` of certificate `name` when the swarm runs mTLS, else nothing. */
  private tlsSection(name: string): { tls?: TlsFiles } {
    const tls = this.certs?.get(name);
    return tls ? { tls } : {};
  }

  private spawn(name: string, ns: string, args: string[], env: NodeJS.ProcessEnv = process.env): Proc {
    const logFile = join(this.logDir, `${name}.log`);
    const fd = openSync(logFile, "a");
    const child = spawn("ip", ["netns", "exec", ns, ...args], { stdio: ["ignore", fd, fd], env });
    closeSync(fd);
    const p: Proc = { name, child, running: true, exited: undefined as unknown as Promise<number | null> };
    p.exited = new Promise((r) =>
      child.once("exit", (code) => {
        p.running = false;
        r(code);
      }),
    );
    this.procs.push(p);
    return p;
  }

  /** Polls an HTTP URL from inside `ns` until it answers 200. */
  private async waitHttp(ns: string, url: string, what: string, proc: Proc, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = nsExec(ns, "curl", ["-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", url], { allowFail: true });
      if (r.stdout === "200") return;
      if (!proc.running) throw new Error(`${what} exited while starting (log ${join(this.logDir, `${proc.name}.log`)})`);
      if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs / 1000}s`);
      await sleep(250);
    }
  }

  private startOrigin(): void {
    const dir = join(this.opts.workDir, "origin");
    const www = join(dir, "www");
    mkdirSync(join(dir, "tmp"), { recursive: true });
    mkdirSync(www, { recursive: true });
    for (const p of [this.opts.workDir, dir, www]) chmodSync(p, 0o755);
    for (const f of this.opts.files) {
      const path = join(www, f.name);
      this.files.set(f.name, { ...f, path, sha256: writeRandomFile(path, f.size) });
    }
    this.nginxLog = join(dir, "access.log");
    this.failFlag = join(dir, "fail-503");
    const conf = `daemon off;
master_process off;
worker_processes 1;
error_log ${join(dir, "error.log")} warn;
pid ${join(dir, "nginx.pid")};
events { worker_connections 1024; }
http {
  log_format bytes '$msec $status $body_bytes_sent $bytes_sent "$request" $remote_addr';
  access_log ${this.nginxLog} bytes;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path ${join(dir, "tmp")};
  proxy_temp_path ${join(dir, "tmp")};
  fastcgi_temp_path ${join(dir, "tmp")};
  uwsgi_temp_path ${join(dir, "tmp")};
  scgi_temp_path ${join(dir, "tmp")};
  types { }
  default_type application/octet-stream;
  server {
    listen ${this.origin.ip}:80;
    root ${www};
    location / {
      if (-f ${this.failFlag}) { return 503; }
    }
  }
}
`;
    writeFileSync(join(dir, "nginx.conf"), conf);
    const bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].find(existsSync) ?? "nginx";
    this.spawn("origin", this.origin.ns, [bin, "-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")]);
  }

  url(name: string): string {
    return `http://${this.origin.ip}/${name}`;
  }

  /** Body bytes the origin sent, from its access log (every status). */
  originBytes(): number {
    if (!existsSync(this.nginxLog)) return 0;
    let sum = 0;
    for (const line of readFileSync(this.nginxLog, "utf8").split("\n")) {
      const n = Number(line.split(" ")[2]);
      if (Number.isFinite(n)) sum += n;
    }
    return sum;
  }

  originRequests(): Array<{ status: number; bytes: number; request: string; from: string }> {
    if (!existsSync(this.nginxLog)) return [];
    return readFileSync(this.nginxLog, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => {
        const m = /^\S+ (\d+) (\d+) \d+ "([^"]*)" (\S+)$/.exec(l);
        return { status: Number(m?.[1]), bytes: Number(m?.[2]), request: m?.[3] ?? "", from: m?.[4] ?? "" };
      });
  }

  /** While on, the origin answers every request with 503. */
  setOriginFailing(on: boolean): void {
    if (on) writeFileSync(this.failFlag, "");
    else rmSync(this.failFlag, { force: true });
  }

  private async startManager(h: NetHost): Promise<void> {
    const dir = join(this.opts.workDir, "manager");
    mkdirSync(dir, { recursive: true });
    const configPath = join(dir, "manager.yaml");
    writeFileSync(
      configPath,
      stringify({
        server: { dataDir: dir, logLevel: "warn", rest: { addr: `${h.ip}:8080` }, grpc: { listenIP: h.ip, advertiseIP: h.ip, port: { start: 65003, end: 65003 }, ...this.tlsSection("manager") } },
        metrics: { addr: `${h.ip}:8000` },
      }),
    );
    const env = { ...process.env };
    delete env.DATABASE_URL;
    const p = this.spawn("manager", h.ns, [process.execPath, ...cliArgs("damselfly"), "manager", "--config", configPath], env);
    await this.waitHttp(h.ns, `http://${h.ip}:8080/healthy`, "manager", p);
  }

  /** Starts (or restarts) the scheduler on its fixed address. */
  async startScheduler(): Promise<void> {
    const h = this.scheduler;
    const dir = join(this.opts.workDir, "scheduler");
    mkdirSync(dir, { recursive: true });
    const configPath = join(dir, "scheduler.yaml");
    writeFileSync(
      configPath,
      stringify({
        server: { listenIP: h.ip, advertiseIP: h.ip, port: 8002, advertisePort: 8002, host: "scheduler", logLevel: "info", ...this.tlsSection("scheduler") },
        metrics: { addr: `${h.ip}:8000` },
        ...(this.opts.schedulerConfig ? { scheduler: this.opts.schedulerConfig } : {}),
        ...(this.certs ? { seedPeer: this.tlsSection("scheduler") } : {}),
        ...(this.manager ? { manager: { addr: `${this.manager.ip}:65003`, schedulerClusterID: 1, ...this.tlsSection("scheduler") } } : {}),
      }),
    );
    const p = this.spawn("scheduler", h.ns, [process.execPath, ...cliArgs("damselfly"), "scheduler", "--config", configPath]);
    this.schedulerProc = p;
    // Its metrics server starts after gRPC and the manager registration.
    await this.waitHttp(h.ns, `http://${h.ip}:8000/metrics`, "scheduler", p);
  }

  async killScheduler(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const p = this.schedulerProc;
    if (!p?.running) return;
    p.child.kill(signal);
    await p.exited;
  }

  /** Starts (or restarts) a daemon with its YAML config. */
  async startDaemon(d: DaemonHost): Promise<void> {
    if (d.impl === "dragonfly") return this.startDragonflyDaemon(d);
    const ip = d.net.ip;
    const extra = this.opts.daemonConfig ?? {};
    const tls = this.certs?.get(d.name);
    writeFileSync(
      d.configPath,
      stringify({
        host: { ip, hostname: d.name },
        download: { server: { socketPath: d.socketPath }, pieceTimeout: "30s", collectedPieceTimeout: "20s" },
        upload: { server: { ip, port: 4000, ...tls }, ...(tls ? { client: tls } : {}) },
        scheduler: { addrs: [`${this.scheduler.ip}:8002`], announceInterval: "30s", ...tls },
        seedPeer: { enable: d.seed },
        storage: { dir: d.dir, keep: true, server: { ip, tcpPort: 4005, ...(tls ? { tls } : {}) } },
        health: { server: { ip, port: 4003 } },
        metrics: { server: { ip, port: 4002 } },
        // The origin lives in the swarm's private subnet: the scheduler's seed trigger may aim
        // the seed peer there, as an operator allows a private origin (refused by default).
        security: { allowedBackToSourceCIDRs: [SUBNET] },
        ...extra,
      }),
    );
    const p = this.spawn(d.name, d.net.ns, [process.execPath, ...cliArgs("dfdaemon"), "--config", d.configPath, "--log-level", "info"]);
    d.proc = p;
    await this.waitHttp(d.net.ns, `http://${ip}:4003/healthy`, d.name, p);
  }

  /** Dragonfly's dfdaemon on the same well-known ports as ours, its config in Dragonfly's keys. */
  private async startDragonflyDaemon(d: DaemonHost): Promise<void> {
    if (!this.manager) throw new Error("Dragonfly's daemons find the scheduler through the manager: start the swarm with manager: true");
    const ip = d.net.ip;
    const ports = { upload: 4000, tcp: 4005, quic: 4006, health: 4003, metrics: 4002, stats: 4004, proxy: 4001 };
    writeFileSync(d.configPath, stringify(dragonflyDaemonConfig({ name: d.name, ip, dir: d.dir, ports, managerAddr: `${this.manager.ip}:65003`, seed: d.seed, announceInterval: "30s" })));
    const bin = join(dragonflyBinDir(), "dfdaemon");
    const p = this.spawn(d.name, d.net.ns, [bin, "--config", d.configPath, "--log-dir", join(d.dir, "log"), "--console", "--log-level", "info"]);
    d.proc = p;
    await this.waitHttp(d.net.ns, `http://${ip}:${ports.health}/healthy`, d.name, p);
    // Its download socket appears once it has registered with the scheduler.
    for (let i = 0; i < 600 && !existsSync(d.socketPath); i++) await new Promise((r) => setTimeout(r, 100));
    if (!existsSync(d.socketPath)) throw new Error(`Dragonfly dfdaemon ${d.name} opened no download socket; see ${d.logFile}`);
  }

  async killDaemon(d: DaemonHost, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const p = d.proc;
    if (!p?.running) return;
    p.child.kill(signal);
    await p.exited;
  }

  /** Downloads through the daemon's unix socket as dfget does, sampling progress. */
  download(d: DaemonHost, url: string, outputPath: string, extra: Partial<Download> = {}, timeoutMs = 900_000): Promise<DownloadOutcome> {
    return this.startDownload(d, url, outputPath, extra, timeoutMs).done;
  }

  /** Like download(), with the bytes landed so far readable while it runs. */
  startDownload(d: DaemonHost, url: string, outputPath: string, extra: Partial<Download> = {}, timeoutMs = 900_000): RunningDownload {
    const client = new DfdaemonDownloadClient(`unix://${d.socketPath}`, credentials.createInsecure());
    const started = Date.now();
    const outcome: DownloadOutcome = { ok: false, ms: 0, contentLength: 0, taskId: "", samples: [{ t: 0, bytes: 0 }] };
    let bytes = 0;
    const done = new Promise<DownloadOutcome>((resolve) => {
      const call = client.downloadTask(
        // overwrite: a retried scenario downloads to the same paths in the same swarm.
        { download: Download.fromPartial({ type: TaskType.STANDARD, priority: 6, url, outputPath, overwrite: true, timeout: { seconds: Math.ceil(timeoutMs / 1000), nanos: 0 }, ...extra }) },
        new Metadata(),
        { deadline: started + timeoutMs },
      );
      call.on("data", (res: DownloadTaskResponse) => {
        outcome.taskId = res.taskId;
        const r = res.response;
        if (r?.$case === "downloadTaskStartedResponse") outcome.contentLength = r.downloadTaskStartedResponse.contentLength;
        else if (r?.$case === "downloadPieceFinishedResponse" && r.downloadPieceFinishedResponse.piece) {
          const piece = r.downloadPieceFinishedResponse.piece;
          bytes += piece.length;
          const costMs = piece.cost ? piece.cost.seconds * 1000 + piece.cost.nanos / 1e6 : 0;
          outcome.samples.push({ t: Date.now() - started, bytes, piece: { number: piece.number, parentId: piece.parentId ?? "", costMs } });
        }
      });
      let finished = false;
      const finish = (err?: string) => {
        if (finished) return;
        finished = true;
        outcome.ms = Date.now() - started;
        outcome.ok = err === undefined;
        if (err !== undefined) outcome.error = err;
        client.close();
        resolve(outcome);
      };
      call.on("error", (e: ServiceError) => finish(e.details || e.message));
      call.on("end", () => finish());
    });
    return { host: d, outputPath, done, bytes: () => bytes };
  }

  /** `curl -o` from inside a host's namespace straight to the origin, sampling the file size. */
  async curl(host: NetHost, url: string, outputPath: string): Promise<DownloadOutcome> {
    const started = Date.now();
    const outcome: DownloadOutcome = { ok: false, ms: 0, contentLength: 0, taskId: "", samples: [{ t: 0, bytes: 0 }] };
    const child = spawn("ip", ["netns", "exec", host.ns, "curl", "-sS", "-f", "-o", outputPath, url], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const timer = setInterval(() => {
      if (existsSync(outputPath)) outcome.samples.push({ t: Date.now() - started, bytes: statSync(outputPath).size });
    }, 250);
    const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    clearInterval(timer);
    outcome.ms = Date.now() - started;
    outcome.ok = code === 0;
    if (code !== 0) outcome.error = `curl exit ${code}: ${err.trim()}`;
    else {
      outcome.contentLength = statSync(outputPath).size;
      outcome.samples.push({ t: outcome.ms, bytes: outcome.contentLength });
    }
    return outcome;
  }

  counters(host: NetHost): { rx: number; tx: number } {
    return this.net.counters(host);
  }

  /** User + system CPU seconds of a running process (from /proc). */
  cpuSeconds(p: Proc | undefined): number {
    const pid = p?.child.pid;
    if (!pid || !p.running) return 0;
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
      return (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      return 0;
    }
  }

  /** Lines of a daemon's log that are JSON objects (pino). */
  logLines(name: string): Array<Record<string, unknown>> {
    const file = join(this.logDir, `${name}.log`);
    if (!existsSync(file)) return [];
    const out: Array<Record<string, unknown>> = [];
    for (const l of readFileSync(file, "utf8").split("\n")) {
      if (!l.startsWith("{")) continue;
      try {
        out.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        // a partial line at the end
      }
    }
    return out;
  }

  /** The daemon's task data files (one per task), largest first. */
  taskFiles(d: DaemonHost): string[] {
    const found: Array<{ path: string; size: number }> = [];
    const walk = (dir: string) => {
      if (!existsSync(dir)) return;
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) found.push({ path: p, size: statSync(p).size });
      }
    };
    walk(join(d.dir, "content"));
    return found.sort((a, b) => b.size - a.size).map((f) => f.path);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.procs) if (p.running) p.child.kill("SIGTERM");
    const grace = sleep(5000);
    await Promise.race([Promise.all(this.procs.map((p) => p.exited)), grace]);
    this.destroySync();
    process.off("exit", this.exitHook);
  }

  /** Synchronous: also runs from the process `exit` hook after a crash. */
  private destroySync(): void {
    for (const p of this.procs) {
      if (p.running) {
        try {
          p.child.kill("SIGKILL");
        } catch {
          // gone
        }
      }
    }
    this.net.destroy();
    spawnSync("true");
  }
}
