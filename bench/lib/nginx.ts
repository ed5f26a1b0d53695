// nginx from Debian as a same-run baseline origin: one foreground process on a free loopback
// port serving a directory with sendfile, as a production origin or CDN edge would.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fdatasyncSeconds } from "./client.js";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function nginxBinary(): string {
  for (const p of ["/usr/sbin/nginx", "/usr/bin/nginx"]) if (existsSync(p)) return p;
  return "nginx";
}

export interface Nginx {
  port: number;
  proc: ChildProcess;
  /** Access log with the bytes sent per request (`$body_bytes_sent` last on each line). */
  accessLog: string;
  stop(): void;
}

/** Starts nginx serving `root`; `probePath` must exist under it (checked until nginx answers). */
export async function startNginx(workDir: string, root: string, probePath: string): Promise<Nginx> {
  const dir = join(workDir, `nginx-${Date.now()}`);
  mkdirSync(join(dir, "tmp"), { recursive: true });
  const port = await freePort();
  const accessLog = join(dir, "access.log");
  // master_process off: one process as the current user (root in CI), so no `user` switch is
  // needed to read the data dir; daemon off so it stays our child.
  const conf = `daemon off;
master_process off;
worker_processes 1;
error_log ${join(dir, "error.log")} warn;
pid ${join(dir, "nginx.pid")};
events { worker_connections 256; }
http {
  log_format bytes '$request $status $body_bytes_sent';
  access_log ${accessLog} bytes;
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
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`;
  writeFileSync(join(dir, "nginx.conf"), conf);
  const proc = spawn(nginxBinary(), ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    const r = spawnSync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:${port}/${probePath}`], { encoding: "utf8" });
    if (r.stdout === "200") return { port, proc, accessLog, stop: () => void proc.kill("SIGTERM") };
    await new Promise((res) => setTimeout(res, 50));
  }
  proc.kill("SIGKILL");
  const log = existsSync(join(dir, "error.log")) ? readFileSync(join(dir, "error.log"), "utf8") : "";
  throw new Error(`nginx did not start (installed? .ci/run installs nginx-light): ${log}`);
}

/** Bytes nginx sent according to its access log. */
export function nginxBytesSent(n: Nginx): number {
  if (!existsSync(n.accessLog)) return 0;
  return readFileSync(n.accessLog, "utf8")
    .split("\n")
    .reduce((s, l) => s + (Number(l.trim().split(" ").pop()) || 0), 0);
}

/**
 * Seconds for `curl -o out url`; with `durable`, until the file's data is on the disk too
 * (fdatasync after curl), as a dfdaemon's store has it when dfget returns (O_DIRECT writes).
 */
export function curlSeconds(url: string, out: string, durable = false): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync("curl", ["-s", "-f", "-o", out, url]);
  if (r.status !== 0) throw new Error(`curl ${url} failed with ${r.status}: ${r.stderr.toString()}`);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return durable ? s + fdatasyncSeconds(out) : s;
}
