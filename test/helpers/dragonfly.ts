// Dragonfly's own Rust client (dfdaemon, dfget) as a test peer: the binaries that
// scripts/install-dragonfly-client.sh builds from the published crate at a pinned version, run
// on 127.0.0.1 with their own ports and directories, configured with Dragonfly's config keys.
// A missing binary fails the test (never a skip): interop is what these tests are for.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { createServer, type AddressInfo, type Server } from "node:net";
import { createSocket } from "node:dgram";

export const DRAGONFLY_CLIENT_VERSION = "1.5.10";

/** The installed binaries' directory, or an error that says how to install them. */
export function dragonflyBinDir(): string {
  const dir = process.env.DRAGONFLY_CLIENT_BIN ?? join(process.env.DAMSELFLY_CACHE ?? "/var/cache/damselfly", `dragonfly-client-${DRAGONFLY_CLIENT_VERSION}`, "bin");
  for (const bin of ["dfdaemon", "dfget"]) {
    if (!existsSync(join(dir, bin))) {
      throw new Error(`Dragonfly's client ${DRAGONFLY_CLIENT_VERSION} is not installed (${join(dir, bin)} missing): run scripts/install-dragonfly-client.sh, which .ci/run does`);
    }
  }
  return dir;
}

export interface DragonflyDaemonOptions {
  name: string;
  dir: string;
  /** Our manager's gRPC address (host:port); the daemon finds its schedulers through it. */
  managerAddr: string;
  /** Piece transfer protocol of this daemon's downloads (Dragonfly's `download.protocol`). */
  protocol?: "tcp" | "quic";
  /** Runs the registry-mirror proxy in front of this registry (http://host:port). */
  registryMirror?: string;
}

export interface DragonflyDaemon {
  name: string;
  /** The id Dragonfly's client gives its host: `<ip>-<hostname>`. */
  hostId: string;
  socket: string;
  dir: string;
  ports: { upload: number; tcp: number; quic: number; health: number; metrics: number; stats: number; proxy: number };
  proc: ChildProcess;
  /** Everything the daemon printed so far (it logs to the console in these tests). */
  output(): string;
  healthy(): Promise<boolean>;
  /** Sends `signal` and waits for the exit (SIGKILL after `graceMs`). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface DragonflyConfigOptions {
  name: string;
  ip: string;
  dir: string;
  ports: DragonflyDaemon["ports"];
  /** Our manager's gRPC address (host:port); the daemon finds its schedulers through it. */
  managerAddr: string;
  protocol?: "tcp" | "quic";
  seed?: boolean;
  registryMirror?: string;
  announceInterval?: string;
}

/** A dfdaemon.yaml in Dragonfly's own keys (dragonfly-client-config's dfdaemon.rs, camelCase). */
export function dragonflyDaemonConfig(o: DragonflyConfigOptions): Record<string, unknown> {
  const { ip, ports } = o;
  return {
    host: { hostname: o.name, ip },
    server: { pluginDir: join(o.dir, "plugins"), cacheDir: join(o.dir, "cache") },
    download: { server: { socketPath: join(o.dir, "dfdaemon.sock") }, protocol: o.protocol ?? "tcp", pieceTimeout: "30s" },
    upload: { server: { ip, port: ports.upload } },
    manager: { addr: `http://${o.managerAddr}` },
    scheduler: { announceInterval: o.announceInterval ?? "10s" },
    seedPeer: { enable: o.seed === true, type: o.seed === true ? "super" : "normal" },
    dynconfig: { refreshInterval: "10s" },
    storage: { server: { ip, tcpPort: ports.tcp, quicPort: ports.quic }, dir: join(o.dir, "storage"), keep: false },
    health: { server: { ip, port: ports.health } },
    metrics: { server: { ip, port: ports.metrics } },
    stats: { server: { ip, port: ports.stats } },
    proxy: {
      server: { ip, port: ports.proxy },
      ...(o.registryMirror ? { registryMirror: { addr: o.registryMirror }, rules: [{ regex: "blobs/sha256.*" }] } : {}),
    },
  };
}

/** Seven distinct ports, each free for TCP and (quic) UDP when chosen: all are held open together so
 * that two of them cannot be one port, which sequential listen(0)/close pairs allow. */
async function daemonPorts(): Promise<DragonflyDaemon["ports"]> {
  const names = ["upload", "tcp", "quic", "health", "metrics", "stats", "proxy"] as const;
  const held: Server[] = [];
  try {
    const chosen: number[] = [];
    while (chosen.length < names.length) {
      const s = createServer();
      await new Promise<void>((resolve, reject) => s.once("error", reject).listen(0, "127.0.0.1", resolve));
      held.push(s);
      const port = (s.address() as AddressInfo).port;
      if (names[chosen.length] === "quic" && !(await udpFree(port))) continue;
      chosen.push(port);
    }
    return Object.fromEntries(names.map((n, i) => [n, chosen[i]])) as unknown as DragonflyDaemon["ports"];
  } finally {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  }
}

async function udpFree(port: number): Promise<boolean> {
  const socket = createSocket("udp4");
  return new Promise((resolve) => {
    socket.once("error", () => resolve(false));
    socket.bind(port, "127.0.0.1", () => socket.close(() => resolve(true)));
  });
}

/** Starts a Dragonfly dfdaemon. A port another test process took between choosing and binding makes
 * it exit with "Address already in use"; that start is retried on fresh ports, nothing else is. */
export async function startDragonflyDaemon(o: DragonflyDaemonOptions): Promise<DragonflyDaemon> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDragonflyDaemonOnce(o, await daemonPorts());
    } catch (e) {
      if (attempt >= 3 || !(e instanceof PortTakenError)) throw e;
    }
  }
}

class PortTakenError extends Error {}

async function startDragonflyDaemonOnce(o: DragonflyDaemonOptions, ports: DragonflyDaemon["ports"]): Promise<DragonflyDaemon> {
  const bin = join(dragonflyBinDir(), "dfdaemon");
  mkdirSync(o.dir, { recursive: true });
  const ip = "127.0.0.1";
  const socket = join(o.dir, "dfdaemon.sock");
  const config = dragonflyDaemonConfig({ ...o, ip, ports });
  const configPath = join(o.dir, "dfdaemon.yaml");
  writeFileSync(configPath, stringify(config));
  const logFile = join(o.dir, "dfdaemon.out");
  writeFileSync(logFile, "");
  const proc = spawn(bin, ["--config", configPath, "--log-dir", join(o.dir, "log"), "--console", "--log-level", "info"], { stdio: ["ignore", "pipe", "pipe"] });
  const record = (c: Buffer) => appendFileSync(logFile, c);
  proc.stdout?.on("data", record);
  proc.stderr?.on("data", record);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
  const output = () => readFileSync(logFile, "utf8");
  const healthy = async () => {
    try {
      return (await fetch(`http://${ip}:${ports.health}/healthy`, { signal: AbortSignal.timeout(2000) })).status === 200;
    } catch {
      return false;
    }
  };
  const daemon: DragonflyDaemon = {
    name: o.name,
    hostId: `${ip}-${o.name}`,
    socket,
    dir: o.dir,
    ports,
    proc,
    output,
    healthy,
    stop: async (signal = "SIGTERM", graceMs = 15_000) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
  // Up when its health server answers and its download socket exists (it opens the socket after
  // registering with the scheduler); an early exit is reported with what it printed.
  for (let i = 0; i < 600; i++) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      const printed = output();
      if (printed.includes("Address already in use")) throw new PortTakenError(`Dragonfly dfdaemon ${o.name}: a port was taken:\n${printed.slice(-2000)}`);
      throw new Error(`Dragonfly dfdaemon ${o.name} exited at start (${proc.exitCode ?? proc.signalCode}):\n${printed.slice(-4000)}`);
    }
    if (existsSync(socket) && (await healthy())) return daemon;
    await new Promise((r) => setTimeout(r, 100));
  }
  await daemon.stop("SIGKILL");
  throw new Error(`Dragonfly dfdaemon ${o.name} did not come up in 60 s:\n${output().slice(-4000)}`);
}

export interface DfgetResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/**
 * Dragonfly's dfget through a Dragonfly daemon's socket. `limitMs` bounds a hang (the failure
 * this suite exists to catch: a dfget that never exits after its last piece), it is not a
 * performance assertion.
 */
export async function dragonflyDfget(socket: string, url: string, out: string, extra: string[] = [], limitMs = 120_000): Promise<DfgetResult> {
  const bin = join(dragonflyBinDir(), "dfget");
  const proc = spawn(bin, [url, "--output", out, "--endpoint", socket, "--console", ...extra], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  proc.stdout?.on("data", (c: Buffer) => (output += c.toString()));
  proc.stderr?.on("data", (c: Buffer) => (output += c.toString()));
  const timer = setTimeout(() => {
    output += `\n[test] dfget still running after ${limitMs} ms: killed`;
    proc.kill("SIGKILL");
  }, limitMs);
  try {
    return await new Promise<DfgetResult>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal, output })));
  } finally {
    clearTimeout(timer);
  }
}
