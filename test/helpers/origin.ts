// A local origin for tests: serves one in-memory file with Range support and counts the bytes
// it sent, so tests can assert how many times the swarm went back to source. Like most web
// servers it sends an ETag and a Last-Modified and honours If-Match / If-Unmodified-Since;
// tests can change the content (a new version) mid-download, and make it send fewer validators
// or ignore the preconditions, as some origins do.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
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
  /** Validators sent with the content: ETag and Last-Modified (default), one of them, or none. */
  validators: "both" | "etag" | "last-modified" | "none";
  /** Answer 412 to an If-Match / If-Unmodified-Since the current version fails (default true). */
  preconditions: boolean;
  content: Buffer;
  sha256: string;
  /** The current version's validators. */
  etag: string;
  lastModified: string;
  /** Serves `content` from now on as a new version: new ETag, Last-Modified a minute later. */
  setContent(content: Buffer): void;
  /** Called before each request is answered, with its 1-based number (tests change versions here). */
  beforeServe: ((n: number, req: IncomingMessage) => void) | undefined;
  /** Request headers of every request, in arrival order. */
  seen: IncomingHttpHeaders[];
  /**
   * How the body's end is told: Content-Length (default, with Range support), chunked
   * Transfer-Encoding, or the close of the connection (HTTP/1.0 style). The last two send no
   * length anywhere and ignore Range, as origins of generated content do.
   */
  framing: "length" | "chunked" | "close";
  /** Cut the connection after sending this many body bytes (undefined: send everything). */
  cutAfter: number | undefined;
  /** Pause a body without length after this many bytes until release() (undefined: no pause). */
  holdAfter: number | undefined;
  /** Lets the held bodies go on, and holds no more. */
  release(): void;
  /** Stops listening and drops every connection: clients get "connection refused". */
  goOffline(): Promise<void>;
  /** Listens again on the same port. */
  comeBack(): Promise<void>;
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

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
let versions = 0;

export async function startOrigin(content: Buffer, path = "/file.bin"): Promise<Origin> {
  /** Bodies paused at holdAfter, each resumed by release(). */
  const held: Array<() => void> = [];
  const origin: Origin = {
    url: (p = path) => `http://127.0.0.1:${port}${p}`,
    bytesServed: 0,
    requests: 0,
    failWith: undefined,
    delayMs: 0,
    rangeSupport: true,
    validators: "both",
    preconditions: true,
    content,
    sha256: "",
    etag: "",
    lastModified: "",
    setContent(c: Buffer) {
      origin.content = c;
      origin.sha256 = sha256(c);
      origin.etag = `"${origin.sha256.slice(0, 16)}"`;
      origin.lastModified = new Date(Date.UTC(2025, 0, 1) + ++versions * 60_000).toUTCString();
    },
    beforeServe: undefined,
    seen: [],
    framing: "length",
    cutAfter: undefined,
    holdAfter: undefined,
    release: () => {
      origin.holdAfter = undefined;
      for (const go of held.splice(0)) go();
    },
    goOffline: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
    comeBack: () => new Promise((r) => server.listen(port, "127.0.0.1", () => r())),
    close: () => new Promise((r) => (server.listening ? server.close(() => r()) : r())),
  };
  origin.setContent(content);
  const server: Server = createServer((req, res) => {
    if (origin.delayMs > 0) {
      setTimeout(() => serve(req, res), origin.delayMs);
      return;
    }
    serve(req, res);
  });
  const serve = (req: IncomingMessage, res: ServerResponse) => {
    origin.requests++;
    origin.seen.push(req.headers);
    origin.beforeServe?.(origin.requests, req);
    if (origin.failWith !== undefined) return void res.writeHead(origin.failWith).end(`failing with ${origin.failWith}\n`);
    if ((req.url ?? "").split("?")[0] !== path) return void res.writeHead(404).end("not found\n");
    // One version per answer, whatever a test changes while the body goes out.
    const content = origin.content;
    const validators: Record<string, string> = {};
    if (origin.validators === "both" || origin.validators === "etag") validators.etag = origin.etag;
    if (origin.validators === "both" || origin.validators === "last-modified") validators["last-modified"] = origin.lastModified;
    if (origin.preconditions) {
      const ifMatch = req.headers["if-match"];
      const ifUnmodified = req.headers["if-unmodified-since"];
      const failed = ifMatch !== undefined ? ifMatch !== "*" && !ifMatch.split(",").some((t) => t.trim() === validators.etag) : ifUnmodified !== undefined && validators["last-modified"] !== undefined && Date.parse(validators["last-modified"]) > Date.parse(ifUnmodified);
      if (failed) return void res.writeHead(412, validators).end();
    }
    if (origin.framing !== "length") return serveWithoutLength(req, res, content, validators);
    const m = origin.rangeSupport ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "") : null;
    let start = 0;
    let end = content.length - 1;
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), content.length - 1) : content.length - 1;
      if (start >= content.length) return void res.writeHead(416, { "content-range": `bytes */${content.length}` }).end();
      res.writeHead(206, { ...validators, "content-range": `bytes ${start}-${end}/${content.length}`, "content-length": end - start + 1, "accept-ranges": "bytes" });
    } else res.writeHead(200, { ...validators, "content-length": content.length, "accept-ranges": "bytes" });
    const body = content.subarray(start, end + 1);
    origin.bytesServed += body.length;
    res.end(body);
  };
  /** The whole content in 64 KiB writes, its end told by the chunked framing or by closing. */
  const serveWithoutLength = (req: IncomingMessage, res: ServerResponse, content: Buffer, validators: Record<string, string>) => {
    const socket = req.socket;
    const size = origin.cutAfter ?? content.length;
    if (origin.framing === "close") {
      // Written on the socket: node's server would pick chunked framing for an HTTP/1.1 client.
      const head = Object.entries(validators).map(([k, v]) => `${k}: ${v}\r\n`);
      socket.write(`HTTP/1.1 200 OK\r\nconnection: close\r\n${head.join("")}\r\n`);
    } else res.writeHead(200, validators);
    let off = 0;
    const pump = () => {
      while (off < size) {
        if (origin.holdAfter !== undefined && off >= origin.holdAfter) return void held.push(pump);
        const piece = content.subarray(off, Math.min(size, off + 65536));
        off += piece.length;
        origin.bytesServed += piece.length;
        const more = origin.framing === "close" ? socket.write(piece) : res.write(piece);
        if (!more) return void (origin.framing === "close" ? socket : res).once("drain", pump);
      }
      if (origin.cutAfter !== undefined) return void socket.destroy();
      if (origin.framing === "close") socket.end();
      else res.end();
    };
    pump();
  };
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return origin;
}
