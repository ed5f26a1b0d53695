// A fake OCI registry on 127.0.0.1 for the proxy tests: blobs by digest with Range support,
// a manifest, a private repository behind a bearer-token challenge, and knobs for the failure
// modes the proxy must not cache (error pages, wrong bytes, stalls). It counts what it served
// per path so tests can tell P2P from direct fetches. `get` is the tests' one-request client.
import { createHash } from "node:crypto";
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface FakeBlob {
  content: Buffer;
  /** Answer GETs with this status and an HTML page instead of the content. */
  failWith?: number | undefined;
  /** Serve these bytes instead of the content (a blob that does not match its digest). */
  lie?: Buffer | undefined;
  /** Ranged reads starting at or after this offset wait for `release()`. */
  gateFrom?: number | undefined;
  private?: boolean;
}

export interface FakeRegistry {
  port: number;
  url: string;
  /** Bytes of blob content sent, by digest. */
  blobBytes: Map<string, number>;
  /** Requests seen, as "METHOD path". */
  requests: string[];
  add(repo: string, blob: FakeBlob): string;
  blob(digest: string): FakeBlob | undefined;
  release(): void;
  close(): Promise<void>;
}

export const TOKEN = "good-token";
export const MANIFEST = JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: {}, layers: [] });

export function digestOf(b: Buffer): string {
  return `sha256:${createHash("sha256").update(b).digest("hex")}`;
}

export async function startFakeRegistry(): Promise<FakeRegistry> {
  const blobs = new Map<string, FakeBlob & { repo: string }>();
  let releaseGate!: () => void;
  let gate = new Promise<void>((r) => (releaseGate = r));
  const reg: FakeRegistry = {
    port: 0,
    url: "",
    blobBytes: new Map(),
    requests: [],
    add(repo, blob) {
      const d = digestOf(blob.content);
      blobs.set(d, { ...blob, repo });
      return d;
    },
    blob: (d) => blobs.get(d),
    release() {
      releaseGate();
      gate = new Promise<void>((r) => (releaseGate = r));
    },
    close: () =>
      new Promise<void>((r) => {
        releaseGate();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  const challenge = () => `Bearer realm="http://127.0.0.1:${reg.port}/token",service="fake",scope="repository:private/app:pull"`;
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    reg.requests.push(`${req.method} ${req.url}`);
    if (path === "/v2/" || path === "/v2") return res.writeHead(200, { "docker-distribution-api-version": "registry/2.0" }).end("{}");
    if (path === "/token") return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: TOKEN }));
    if (path.startsWith("/v2/private/") && req.headers.authorization !== `Bearer ${TOKEN}`) {
      return res.writeHead(401, { "www-authenticate": challenge(), "content-type": "application/json" }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
    }
    const manifest = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path);
    if (manifest) {
      const body = Buffer.from(MANIFEST);
      return res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json", "docker-content-digest": digestOf(body), "content-length": body.length }).end(req.method === "HEAD" ? undefined : body);
    }
    const m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(path);
    const blob = m?.[2] ? blobs.get(m[2]) : undefined;
    if (!m?.[2] || !blob || blob.repo !== m[1]) return res.writeHead(404, { "content-type": "application/json" }).end('{"errors":[{"code":"BLOB_UNKNOWN"}]}');
    if (blob.failWith !== undefined) return res.writeHead(blob.failWith, { "content-type": "text/html" }).end("<html><body>maintenance</body></html>");
    const content = blob.lie ?? blob.content;
    const headers: Record<string, string | number> = { "content-type": "application/octet-stream", "docker-content-digest": m[2], "accept-ranges": "bytes" };
    let start = 0;
    let end = content.length - 1;
    const r = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (r) {
      start = Number(r[1]);
      end = r[2] ? Math.min(Number(r[2]), content.length - 1) : content.length - 1;
      if (start >= content.length) return res.writeHead(416, { "content-range": `bytes */${content.length}` }).end();
      headers["content-range"] = `bytes ${start}-${end}/${content.length}`;
    }
    headers["content-length"] = end - start + 1;
    if (req.method === "HEAD") return res.writeHead(r ? 206 : 200, headers).end();
    if (blob.gateFrom !== undefined && start >= blob.gateFrom) await gate;
    res.writeHead(r ? 206 : 200, headers);
    const body = content.subarray(start, end + 1);
    reg.blobBytes.set(m[2], (reg.blobBytes.get(m[2]) ?? 0) + body.length);
    res.end(body);
  };
  const server: Server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  reg.port = (server.address() as AddressInfo).port;
  reg.url = `http://127.0.0.1:${reg.port}`;
  return reg;
}

/** Deterministic bytes, distinct per MiB, so an offset mistake shows up. */
export function blobContent(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed * 2654435761 || 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeInt32LE(x | 0, i);
  }
  for (let i = size - (size % 4); i < size; i++) out[i] = i & 0xff;
  return out;
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** False when the connection was cut before the announced length arrived. */
  complete: boolean;
}

/** One request with its own connection; `path` may be absolute-form (forward proxy). */
export function get(port: number, path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let done = false;
      const finish = (complete: boolean) => {
        if (done) return;
        done = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete });
      };
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => finish(res.complete));
      res.on("error", () => finish(false));
      res.on("aborted", () => finish(false));
      res.on("close", () => finish(res.complete));
    });
    req.on("error", reject);
    req.end();
  });
}
