// A local origin for tests: serves one in-memory file with Range support and counts the bytes
// it sent, so tests can assert how many times the swarm went back to source.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createHash, randomBytes } from "node:crypto";

export interface Origin {
  url(path?: string): string;
  bytesServed: number;
  requests: number;
  /** Status to answer with instead of content (e.g. 503), or undefined for normal service. */
  failWith: number | undefined;
  /** Delay before answering each request, to make transfers slow enough to interrupt. */
  delayMs: number;
  /** Honour Range requests (python's http.server and some CDNs do not). */
  rangeSupport: boolean;
  content: Buffer;
  sha256: string;
  close(): Promise<void>;
}

export function makeContent(size: number, seed = 1): Buffer {
  // Cheap pseudo-random bytes (incompressible enough, deterministic by seed).
  const block = randomBytes(1 << 20);
  block.writeUInt32BE(seed, 0);
  const out = Buffer.allocUnsafe(size);
  for (let off = 0; off < size; off += block.length) block.copy(out, off, 0, Math.min(block.length, size - off));
  // Make each MiB distinct so a piece served at the wrong offset is detected.
  for (let off = 0, i = 0; off + 8 <= size; off += 1 << 20, i++) out.writeBigUInt64BE(BigInt(i) ^ BigInt(seed), off);
  return out;
}

export async function startOrigin(content: Buffer, path = "/file.bin"): Promise<Origin> {
  const origin: Origin = {
    url: (p = path) => `http://127.0.0.1:${(server.address() as AddressInfo).port}${p}`,
    bytesServed: 0,
    requests: 0,
    failWith: undefined,
    delayMs: 0,
    rangeSupport: true,
    content,
    sha256: createHash("sha256").update(content).digest("hex"),
    close: () => new Promise((r) => server.close(() => r())),
  };
  const server: Server = createServer((req, res) => {
    if (origin.delayMs > 0) {
      setTimeout(() => serve(req, res), origin.delayMs);
      return;
    }
    serve(req, res);
  });
  const serve = (req: IncomingMessage, res: ServerResponse) => {
    origin.requests++;
    if (origin.failWith !== undefined) return void res.writeHead(origin.failWith).end(`failing with ${origin.failWith}\n`);
    if ((req.url ?? "").split("?")[0] !== path) return void res.writeHead(404).end("not found\n");
    const m = origin.rangeSupport ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "") : null;
    let start = 0;
    let end = content.length - 1;
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), content.length - 1) : content.length - 1;
      if (start >= content.length) return void res.writeHead(416, { "content-range": `bytes */${content.length}` }).end();
      res.writeHead(206, { "content-range": `bytes ${start}-${end}/${content.length}`, "content-length": end - start + 1, "accept-ranges": "bytes" });
    } else res.writeHead(200, { "content-length": content.length, "accept-ranges": "bytes" });
    const body = content.subarray(start, end + 1);
    origin.bytesServed += body.length;
    res.end(body);
  };
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return origin;
}
