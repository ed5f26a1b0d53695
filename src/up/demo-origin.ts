// The demo origin of `damselfly up`: serves the files of <data-dir>/origin over HTTP on loopback
// (GET/HEAD with single byte ranges), so the printed dfget example works on a machine without
// internet access. A demo file with a known SHA-256 is created on first start and kept, so a
// second `up` finds the same task in the peers' caches.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, openSync, closeSync, readFileSync, statSync, writeFileSync, writeSync, renameSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve, sep } from "node:path";

export const DEMO_FILE = "demo.bin";
export const DEMO_SIZE = 32 * 1024 * 1024;

export interface DemoOrigin {
  port: number;
  url(name?: string): string;
  close(): Promise<void>;
}

/** Creates the demo file once (random bytes) and returns its SHA-256, cached next to it. */
export function ensureDemoFile(dir: string, size = DEMO_SIZE): { path: string; sha256: string; size: number } {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, DEMO_FILE);
  const digestPath = `${path}.sha256`;
  if (existsSync(path) && existsSync(digestPath) && statSync(path).size === size) {
    const sha256 = readFileSync(digestPath, "utf8").trim();
    if (/^[0-9a-f]{64}$/.test(sha256)) return { path, sha256, size };
  }
  const tmp = `${path}.tmp`;
  const hash = createHash("sha256");
  const fd = openSync(tmp, "w", 0o644);
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
  renameSync(tmp, path);
  const sha256 = hash.digest("hex");
  writeFileSync(digestPath, `${sha256}\n`);
  return { path, sha256, size };
}

export async function startDemoOrigin(dir: string, port: number): Promise<DemoOrigin> {
  const root = resolve(dir);
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return void res.writeHead(405, { allow: "GET, HEAD" }).end();
    let name: string;
    try {
      name = decodeURIComponent((req.url ?? "/").split("?")[0] ?? "/");
    } catch {
      return void res.writeHead(400).end("bad path\n");
    }
    const file = resolve(root, `.${name}`);
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) return void res.writeHead(404).end("not found\n");
    const size = statSync(file).size;
    let start = 0;
    let end = size - 1;
    const range = req.headers.range;
    if (range !== undefined) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range);
      if (!m || (m[1] === "" && m[2] === "")) return void res.writeHead(416, { "content-range": `bytes */${size}` }).end();
      if (m[1] === "") start = Math.max(0, size - Number(m[2]));
      else {
        start = Number(m[1]);
        if (m[2] !== "") end = Math.min(Number(m[2]), size - 1);
      }
      if (start >= size || start > end) return void res.writeHead(416, { "content-range": `bytes */${size}` }).end();
      res.writeHead(206, { "content-range": `bytes ${start}-${end}/${size}`, "content-length": end - start + 1, "accept-ranges": "bytes" });
    } else res.writeHead(200, { "content-length": size, "accept-ranges": "bytes" });
    if (req.method === "HEAD" || size === 0) return void res.end();
    createReadStream(file, { start, end })
      .on("error", () => res.destroy())
      .pipe(res);
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(port, "127.0.0.1", () => ok());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    port: bound,
    url: (name = DEMO_FILE) => `http://127.0.0.1:${bound}/${name}`,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  };
}
