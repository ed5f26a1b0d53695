// Timing a real client process (dfget, curl, the AWS CLI) that writes a file, and the
// fdatasync that puts a baseline's file on the disk: a dfdaemon's store writes with O_DIRECT,
// so when dfget returns its output is durable, and a baseline's only after an fdatasync
// (bench/daemon.ts tells what comparing against the page cache alone measured).
import { spawn } from "node:child_process";
import { closeSync, fdatasyncSync, openSync } from "node:fs";

/** Seconds `cmd args` runs; a non-zero exit fails with `what` and the end of its stderr. */
export async function clientSeconds(what: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  const t0 = process.hrtime.bigint();
  const p = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], ...(env ? { env } : {}) });
  let err = "";
  p.stderr.on("data", (b: Buffer) => (err = (err + b.toString()).slice(-2000)));
  const code = await new Promise<number | null>((resolve, reject) => {
    p.once("error", reject);
    p.once("close", resolve);
  });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (code !== 0) throw new Error(`${what} failed (exit ${code}): ${err.trim()}`);
  return s;
}

/** Seconds an fdatasync of `path` takes (its dirty pages written to the disk). */
export function fdatasyncSeconds(path: string): number {
  const t0 = process.hrtime.bigint();
  const fd = openSync(path, "r");
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
