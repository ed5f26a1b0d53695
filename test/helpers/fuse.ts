// A directory whose writes can be made to fail with a real EIO from the kernel: a FUSE
// passthrough (test/helpers/fuse-server.ts, its own process) over a backing directory.
import { fork, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

export interface WriteFault {
  /** Base name of the files whose writes fail (a task's `content`). */
  name: string;
  /** Byte range: a write overlapping it fails. */
  start: number;
  end: number;
  /** How many such writes fail before writes go through again. */
  times: number;
}

export interface FaultStats {
  /** Writes failed with EIO since the fault was set. */
  injected: number;
  /** Writes into the range that went through after a failure: the piece written again. */
  rewrites: number;
}

export interface FaultyFs {
  mountpoint: string;
  /** Replaces the write fault (counters start again from 0). */
  failWrites(fault: WriteFault): Promise<FaultStats>;
  stats(): Promise<FaultStats>;
  /** Unmounts and stops the server. */
  close(): Promise<void>;
}

/** Whether FUSE mounts can be made here: /dev/fuse and root (mount(2) without fusermount). */
export function fuseAvailable(): boolean {
  return existsSync("/dev/fuse") && process.getuid?.() === 0;
}

export async function mountFaultyFs(backing: string, mountpoint: string): Promise<FaultyFs> {
  const server = fileURLToPath(new URL("./fuse-server.ts", import.meta.url));
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const child: ChildProcess = fork(server, [backing, mountpoint], { cwd: root, execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const waiters: Array<(m: FaultStats) => void> = [];
  let ready: () => void = () => undefined;
  const started = new Promise<void>((resolve, reject) => {
    ready = resolve;
    child.once("exit", (code) => reject(new Error(`FUSE server exited with ${code} before mounting`)));
  });
  child.on("message", (m: { type: string } & FaultStats) => {
    if (m.type === "ready") ready();
    else if (m.type === "stats") waiters.shift()?.({ injected: m.injected, rewrites: m.rewrites });
  });
  await started;
  const ask = (msg: object) =>
    new Promise<FaultStats>((resolve) => {
      waiters.push(resolve);
      child.send(msg);
    });
  return {
    mountpoint,
    failWrites: (rule) => ask({ type: "fail", rule }),
    stats: () => ask({ type: "stats" }),
    close: async () => {
      if (spawnSync("umount", [mountpoint]).status !== 0) spawnSync("umount", ["-l", mountpoint]);
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill();
        await exited;
      }
    },
  };
}
