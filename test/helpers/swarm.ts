// Starts schedulers and daemons on 127.0.0.1 with their own ports and directories, and
// downloads through a daemon's unix socket the way dfget does.
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { silentLogger } from "../../src/common/logger.js";
import { resolveDaemonConfig, DaemonConfigSchema, type DaemonConfig } from "../../src/daemon/config.js";
import { startDaemon, type DaemonHandle } from "../../src/daemon/daemon.js";
import { validateConfig } from "../../src/common/config.js";
import { Download, TaskType } from "../../src/gen/common/v2/common.js";
import { DfdaemonDownloadClient, type DownloadTaskResponse } from "../../src/gen/dfdaemon/v2/dfdaemon.js";
import { startScheduler, type SchedulerHandle } from "../../src/scheduler/server.js";

export const tmpDirs: string[] = [];

export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `${prefix}-`));
  tmpDirs.push(d);
  return d;
}

export function cleanupTempDirs(): void {
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export async function startTestScheduler(extra: Record<string, unknown> = {}): Promise<SchedulerHandle> {
  return startScheduler(
    {
      server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", logLevel: "silent" },
      metrics: { enable: false },
      ...extra,
    },
    { logger: silentLogger() },
  );
}

export interface TestDaemonOptions {
  name: string;
  schedulers: string[];
  seed?: boolean;
  dir?: string;
  keep?: boolean;
  overrides?: Record<string, unknown>;
}

export function testDaemonConfig(o: TestDaemonOptions): DaemonConfig {
  const dir = o.dir ?? tempDir(`daemon-${o.name}`);
  const input = validateConfig(DaemonConfigSchema, {
    host: { ip: "127.0.0.1", hostname: o.name },
    download: { server: { socketPath: join(dir, "dfdaemon.sock") }, collectedPieceTimeout: "10s", pieceTimeout: "30s" },
    upload: { server: { ip: "127.0.0.1", port: 0 } },
    scheduler: { addrs: o.schedulers, announceInterval: "30s" },
    seedPeer: { enable: o.seed === true },
    storage: { dir, keep: o.keep ?? true, server: { ip: "127.0.0.1", tcpPort: 0, quicPort: 0 } },
    health: { server: { ip: "127.0.0.1", port: 0 } },
    metrics: { server: { ip: "127.0.0.1", port: 0 } },
    security: { allowedBackToSourceCIDRs: ["127.0.0.0/8"] },
    ...o.overrides,
  });
  return resolveDaemonConfig(input);
}

export async function startTestDaemon(o: TestDaemonOptions): Promise<DaemonHandle> {
  return startDaemon(testDaemonConfig(o), silentLogger());
}

export interface DownloadResult {
  taskId: string;
  contentLength: number;
  pieces: number;
}

/** Downloads through a daemon's socket as dfget does; rejects with the daemon's error. */
export async function downloadVia(socketPath: string, partial: Partial<Download>, onPiece?: () => void): Promise<DownloadResult> {
  const client = new DfdaemonDownloadClient(`unix://${socketPath}`, credentials.createInsecure());
  try {
    return await new Promise<DownloadResult>((resolve, reject) => {
      const call = client.downloadTask({ download: Download.fromPartial({ type: TaskType.STANDARD, priority: 6, ...partial }) }, new Metadata());
      const r: DownloadResult = { taskId: "", contentLength: 0, pieces: 0 };
      call.on("data", (res: DownloadTaskResponse) => {
        r.taskId = res.taskId;
        if (res.response?.$case === "downloadTaskStartedResponse") r.contentLength = res.response.downloadTaskStartedResponse.contentLength;
        else if (res.response?.$case === "downloadPieceFinishedResponse") {
          r.pieces++;
          onPiece?.();
        }
      });
      call.on("error", (e: ServiceError) => reject(Object.assign(new Error(e.details), { code: e.code })));
      call.on("end", () => resolve(r));
    });
  } finally {
    client.close();
  }
}

/** The value of one sample on a daemon's /metrics (`labels` as printed, e.g. `reason="corrupt"`); 0 when absent. */
export async function metricValue(metricsPort: number, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/**
 * A dfdaemon config file for a daemon in a process of its own (to be killed or stopped): the
 * loopback settings of testDaemonConfig, with `overrides` merged per top-level section.
 */
export function writeDaemonConfigFile(dir: string, name: string, overrides: Record<string, Record<string, unknown>> = {}): { config: string; socket: string } {
  const socket = join(dir, "dfdaemon.sock");
  const config = join(dir, "dfdaemon.yaml");
  const base: Record<string, Record<string, unknown>> = {
    host: { ip: "127.0.0.1", hostname: name },
    download: { server: { socketPath: socket } },
    upload: { server: { ip: "127.0.0.1", port: 0 } },
    storage: { dir, keep: true, server: { ip: "127.0.0.1", tcpPort: 0, quicPort: 0 } },
    health: { server: { ip: "127.0.0.1", port: 0 } },
    metrics: { server: { ip: "127.0.0.1", port: 0 } },
  };
  for (const [k, v] of Object.entries(overrides)) base[k] = { ...base[k], ...v };
  writeFileSync(config, stringify(base));
  return { config, socket };
}

/** Runs the built dfdaemon (bin/dfdaemon.js, which loads dist/) on a config file. */
export function spawnDaemonProcess(config: string): ChildProcess {
  const bin = new URL("../../bin/dfdaemon.js", import.meta.url).pathname;
  return spawn(process.execPath, [bin, "--config", config, "--log-level", "error"], { stdio: ["ignore", "ignore", "inherit"] });
}

/** Runs the built dfget (bin/dfget.js, which loads dist/) against a daemon's socket: its exit status and stderr. */
export function runDfget(socket: string, args: string[]): Promise<{ status: number | null; stderr: string }> {
  const bin = new URL("../../bin/dfget.js", import.meta.url).pathname;
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, ...args, "-e", socket, "--no-progress"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    p.on("close", (status) => resolve({ status, stderr }));
  });
}
