// A resident dfdaemon in a process of its own and `dfget` through it, as the daemon, s3 and
// hdfs suites measure the product path a user times: the daemon process, its socket, the dfget
// process until the file is written, and the task deleted again between rounds.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { credentials, Metadata } from "@grpc/grpc-js";
import { stringify } from "yaml";
import { DfdaemonDownloadClient } from "../../src/gen/dfdaemon/v2/dfdaemon.js";
import type { TlsFiles } from "../../src/common/grpc/tls.js";
import { clientSeconds } from "./client.js";

const root = new URL("../..", import.meta.url).pathname;

export interface Daemon {
  proc: ChildProcess;
  socket: string;
  stop(): void;
  peakRssBytes(): number;
}

export interface DaemonExtras {
  /** The daemon's certificate for every connection it makes or takes (mTLS on, as `up` runs it). */
  tls?: TlsFiles | undefined;
  /** Pieces sealed at rest: every task of the default tenant, keys from this manager over mTLS. */
  sealed?: { managerAddr: string; tls: TlsFiles | undefined };
}

export async function startDaemonProcess(dir: string, name: string, schedulers: string[], extras: DaemonExtras = {}): Promise<Daemon> {
  const { tls, sealed } = extras;
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "dfdaemon.sock");
  const config = join(dir, "dfdaemon.yaml");
  writeFileSync(
    config,
    stringify({
      host: { ip: "127.0.0.1", hostname: name },
      download: { server: { socketPath: socket } },
      upload: { server: { ip: "127.0.0.1", port: 0, ...tls }, client: { ...tls } },
      scheduler: { addrs: schedulers, ...tls },
      ...(sealed ? { manager: { addr: sealed.managerAddr, ...sealed.tls } } : {}),
      storage: { dir: join(dir, "data"), keep: false, server: { ip: "127.0.0.1", tcpPort: 0, quicPort: 0, ...(tls ? { tls } : {}) }, ...(sealed ? { encryption: { tenants: ["default"] } } : {}) },
      health: { server: { ip: "127.0.0.1", port: 0 } },
      metrics: { server: { ip: "127.0.0.1", port: 0 } },
    }),
  );
  const proc = spawn(process.execPath, [join(root, "bin/dfdaemon.js"), "--config", config, "--log-level", process.env.BENCH_DAEMON_LOG ?? "error"], { stdio: ["ignore", process.env.BENCH_DAEMON_LOG ? "inherit" : "ignore", "inherit"] });
  for (let i = 0; i < 300 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
  if (!existsSync(socket)) throw new Error(`dfdaemon ${name} did not start`);
  return {
    proc,
    socket,
    stop: () => void proc.kill("SIGTERM"),
    peakRssBytes: () => {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"));
      return m?.[1] ? Number(m[1]) * 1024 : 0;
    },
  };
}

/**
 * Seconds for `dfget url -O out` through the daemon at `socket` (`args`: more flags, such as
 * an object store's endpoint and keys). Asynchronous on purpose: a scheduler in this process
 * must keep answering.
 */
export function dfgetSeconds(socket: string, url: string, out: string, args: string[] = []): Promise<number> {
  return clientSeconds("dfget", process.execPath, [join(root, "bin/dfget.js"), "-e", socket, url, "-O", out, "--no-progress", ...args]);
}

/**
 * Deletes a task from the daemon's store, so the next download of its URL goes to the origin
 * again. Resolves with the daemon's refusal, if any (a task id that names nothing there).
 */
export async function deleteTask(socket: string, taskId: string): Promise<Error | undefined> {
  const c = new DfdaemonDownloadClient(`unix://${socket}`, credentials.createInsecure());
  try {
    return await new Promise<Error | undefined>((resolve) => c.deleteTask({ taskId }, new Metadata(), (e) => resolve(e ?? undefined)));
  } finally {
    c.close();
  }
}
