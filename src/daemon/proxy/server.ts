// dfdaemon's HTTP(S) proxy and registry mirror (Dragonfly's port 4001):
// - registry-mirror mode: origin-form requests (`GET /v2/…`); the upstream comes from
//   X-Dragonfly-Registry, then containerd's `?ns=`, then proxy.registryMirror.addr;
// - forward proxy: absolute-form requests (`GET http://host/…`);
// - CONNECT: TLS is terminated with a per-host certificate from our CA and the requests inside
//   the tunnel are handled like forward-proxy requests to https://host.
// GETs whose URL matches proxy.rules go through the swarm (TaskManager) and stream to the
// client as pieces land; everything else is forwarded directly and never stored.
import { createHash, timingSafeEqual } from "node:crypto";
import { setMaxListeners } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import { TLSSocket } from "node:tls";
import { readFileSync } from "node:fs";
import type { Registry } from "prom-client";
import { ConfigError } from "../../common/config.js";
import { blobDigestFromUrl } from "../../common/ids.js";
import type { Logger } from "../../common/logger.js";
import { SsrfPolicy } from "../../common/ssrf.js";
import { Download, TaskType } from "../../gen/common/v2/common.js";
import type { DaemonConfig } from "../config.js";
import { parseSize } from "../config.js";
import type { Storage } from "../storage/storage.js";
import type { PieceInfo, TaskStore } from "../storage/types.js";
import { DownloadError, type TaskManager } from "../task/manager.js";
import { taskIdOf } from "../task/task-id.js";
import { CertificateAuthority } from "./ca.js";
import { DEFAULT_FILTERED_QUERY_PARAMS, H, ProxyRequestError, readDragonflyHeaders, single, upstreamRequestHeaders, type DragonflyRequestOptions } from "./headers.js";
import { proxyMetrics, type ProxyMetrics } from "./metrics.js";
import { coveringPieces, parseRange } from "./range.js";
import { compileRules, downloadUrl, matchRule, type Rule } from "./rules.js";
import { PieceStream } from "./stream.js";
import { createUpstreams, forward, sendError, type Upstreams } from "./upstream.js";

export type ProxyConfig = NonNullable<DaemonConfig["proxy"]>;

export interface ProxyOptions {
  config: ProxyConfig;
  tasks: TaskManager;
  storage: Storage;
  log: Logger;
  registry: Registry;
  /** Where a generated CA is kept (`<dir>/ca.crt`, `<dir>/ca.key`). */
  caDir: string;
  /** CIDRs that upstreams chosen by clients may reach although the SSRF policy refuses them. */
  allowedCidrs: readonly string[];
  /** Our advertised IP, sent as X-Dragonfly-Server-IP. */
  serverIp: string;
}

export interface ProxyHandle {
  port: number;
  /** The CA certificate that signs intercepted HTTPS (give it to runtimes / curl --cacert). */
  caCertPath: string;
  caCertPem: string;
  close(): Promise<void>;
}

/** Bytes withheld from a whole-blob response until its digest is verified. */
const HOLD_BACK = 64 * 1024;
/** Large bearer tokens fit; anything bigger is refused with 431. */
const MAX_HEADER_SIZE = 32 * 1024;

/** Request headers that must not reach the origin of a P2P download (per piece, the backend sets Range). */
const NOT_FOR_ORIGIN = ["range", "if-range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "accept-encoding", "content-length"];
/** Origin response headers worth repeating on a blob served from the swarm. */
const KEPT_RESPONSE_HEADERS = ["content-type", "docker-content-digest", "etag", "last-modified", "cache-control", "docker-distribution-api-version"];
/** Headers of an origin's error answer that the client needs (registry auth). */
const KEPT_ERROR_HEADERS = ["www-authenticate", "docker-distribution-api-version", "retry-after", "location"];

interface Target {
  url: URL;
  /** A client picked this upstream: the SSRF policy applies. */
  chosen: boolean;
}

class TokenBucket {
  private tokens: number;
  private last = Date.now();
  constructor(private readonly rate: number) {
    this.tokens = rate;
  }
  take(): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

function upstreamBase(value: string, source: string): URL {
  const text = value.includes("://") ? value : `https://${value}`;
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new ProxyRequestError(`${source}: "${value}" is not a registry address`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new ProxyRequestError(`${source}: only http and https registries are supported, got ${u.protocol}`);
  return u;
}

class Proxy {
  private readonly rules: Rule[];
  private readonly metrics: ProxyMetrics;
  private readonly bucket: TokenBucket;
  private readonly upstreams: Upstreams;
  private readonly lifetime = new AbortController();
  private readonly expectedAuth: Buffer | undefined;
  /** Tasks whose stored content we checked against the blob digest in this process. */
  private readonly verified = new Set<string>();
  private readonly mirror: URL;
  readonly tunnels = new WeakMap<Socket, { host: string; port: number }>();

  constructor(
    private readonly o: ProxyOptions,
    readonly ca: CertificateAuthority,
  ) {
    const c = o.config;
    // Every download in flight listens on the lifetime signal.
    setMaxListeners(0, this.lifetime.signal);
    this.rules = compileRules(c.rules);
    this.metrics = proxyMetrics(o.registry);
    this.bucket = new TokenBucket(c.server.requestRateLimit);
    let mirrorCa: string | undefined;
    if (c.registryMirror.cert) {
      try {
        mirrorCa = readFileSync(c.registryMirror.cert, "utf8");
      } catch (e) {
        throw new ConfigError(`proxy.registryMirror.cert: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    try {
      this.mirror = upstreamBase(c.registryMirror.addr, "proxy.registryMirror.addr");
    } catch (e) {
      throw new ConfigError(e instanceof Error ? e.message : String(e));
    }
    this.upstreams = createUpstreams(new SsrfPolicy({ allowCidrs: o.allowedCidrs }), mirrorCa);
    const auth = c.server.basicAuth;
    this.expectedAuth = auth ? sha256(`Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`) : undefined;
  }

  /** Constant-time comparison of Proxy-Authorization (hashes make the lengths equal). */
  authorized(req: IncomingMessage): boolean {
    if (!this.expectedAuth) return true;
    const given = req.headers["proxy-authorization"];
    return typeof given === "string" && timingSafeEqual(sha256(given.trim()), this.expectedAuth);
  }

  allowRequest(): boolean {
    return this.bucket.take();
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.metrics.requestTotal.inc();
    try {
      if (!this.allowRequest()) return sendError(res, 429, "proxy", "too many requests");
      const tunnel = this.tunnels.get(req.socket);
      // Inside a tunnel the client already authenticated on CONNECT.
      if (!tunnel && !this.authorized(req)) {
        this.metrics.requestFailureTotal.inc();
        return sendError(res, 407, "proxy", "proxy authentication required", { "proxy-authenticate": 'Basic realm="damselfly"' });
      }
      if (req.rawHeaders.filter((_, i) => i % 2 === 0 && req.rawHeaders[i]?.toLowerCase() === "host").length > 1) throw new ProxyRequestError("more than one Host header");
      const target = this.target(req, tunnel);
      const rule = matchRule(this.rules, target.url);
      const opts = readDragonflyHeaders(req.headers, rule?.filteredQueryParams ?? DEFAULT_FILTERED_QUERY_PARAMS);
      if (req.method === "GET" && (rule !== undefined || opts.useP2P)) {
        this.metrics.requestViaDfdaemonTotal.inc();
        await this.viaSwarm(req, res, target, rule, opts);
      } else {
        await forward(req, res, target.url, target.chosen ? this.upstreams.chosen : this.upstreams.trusted, this.lifetime.signal);
      }
    } catch (e) {
      this.metrics.requestFailureTotal.inc();
      this.fail(req, res, e);
    }
  }

  private fail(req: IncomingMessage, res: ServerResponse, e: unknown): void {
    if (e instanceof ProxyRequestError) return sendError(res, e.statusCode, "proxy", e.message);
    const ssrf = findSsrf(e);
    if (ssrf) return sendError(res, 403, "proxy", ssrf);
    if (e instanceof DownloadError) {
      const be = e.backend;
      if (e.kind === "backend" && be?.statusCode !== undefined && (be.statusCode < 200 || be.statusCode > 299)) {
        // The origin's status and auth challenge, unchanged (registry auth through the mirror).
        const headers: Record<string, string> = {};
        for (const k of KEPT_ERROR_HEADERS) if (be.headers[k] !== undefined) headers[k] = be.headers[k];
        return sendError(res, be.statusCode, "backend", `upstream answered ${be.statusCode}`, headers);
      }
      if (e.kind === "backend") return sendError(res, 502, "backend", e.message);
      if (e.kind === "not_found") return sendError(res, 404, "dfdaemon", e.message);
      if (e.kind === "unavailable") return sendError(res, 503, "dfdaemon", e.message);
      return sendError(res, 502, "dfdaemon", e.message);
    }
    this.o.log.warn({ url: req.url, method: req.method, err: e instanceof Error ? e.message : String(e) }, "proxy request failed");
    sendError(res, 502, "backend", e instanceof Error ? e.message : String(e));
  }

  /** Where the request goes, by the request-target form. */
  private target(req: IncomingMessage, tunnel: { host: string; port: number } | undefined): Target {
    const raw = req.url ?? "";
    if (tunnel) {
      const origin = `https://${tunnel.host.includes(":") ? `[${tunnel.host}]` : tunnel.host}:${tunnel.port}`;
      if (raw.startsWith("/")) return { url: new URL(`${origin}${raw}`), chosen: true };
      const abs = parseAbsolute(raw);
      if (abs.origin !== new URL(origin).origin) throw new ProxyRequestError(`request for ${abs.origin} inside a tunnel to ${origin}`);
      return { url: abs, chosen: true };
    }
    if (raw.startsWith("/")) {
      const header = single(req.headers, H.registry);
      const query = new URLSearchParams(raw.includes("?") ? raw.slice(raw.indexOf("?")) : "");
      const ns = query.get("ns") ?? undefined;
      const base = header !== undefined ? upstreamBase(header, H.registry) : ns !== undefined ? upstreamBase(ns, "ns query parameter") : this.mirror;
      return { url: new URL(`${base.origin}${base.pathname.replace(/\/+$/, "")}${raw}`), chosen: header !== undefined || ns !== undefined };
    }
    return { url: parseAbsolute(raw), chosen: true };
  }

  /** A GET through the swarm: stream pieces as they land, Range computed over pieces. */
  private async viaSwarm(req: IncomingMessage, res: ServerResponse, target: Target, rule: Rule | undefined, opts: DragonflyRequestOptions): Promise<void> {
    const c = this.o.config;
    const url = downloadUrl(target.url, rule);
    const requestHeader = upstreamRequestHeaders(req.headers);
    for (const k of NOT_FOR_ORIGIN) delete requestHeader[k];
    const blobDigest = blobDigestFromUrl(url.href);
    const download = Download.fromPartial({
      url: url.href,
      type: TaskType.STANDARD,
      priority: opts.priority,
      tag: opts.tag,
      application: opts.application,
      filteredQueryParams: opts.filteredQueryParams,
      requestHeader,
      pieceLength: opts.pieceLength,
      // The pipeline checks the whole content against the blob digest before it succeeds.
      digest: blobDigest,
      disableBackToSource: c.disableBackToSource,
      enableTaskIdBasedBlobDigest: opts.enableTaskIdBasedBlobDigest ?? c.registryMirror.enableTaskIDBasedBlobDigest,
      contentForCalculatingTaskId: opts.contentForCalculatingTaskId,
      prefetch: opts.prefetch ?? c.prefetch,
    });
    const taskId = taskIdOf(download);
    // An operator's redirect names the origin; otherwise a client-chosen upstream is remote.
    const remote = target.chosen && !rule?.redirect;
    const rangeHeader = single(req.headers, "range");

    let stored = this.o.storage.get(taskId);
    let complete = stored !== undefined && stored.meta.state === "succeeded" && stored.finished().length === stored.meta.pieceCount;
    if (stored && complete && blobDigest && !(await this.contentMatches(stored, blobDigest))) {
      this.o.log.warn({ taskId, digest: blobDigest }, "stored task does not match its blob digest; deleting it and downloading again");
      if (!this.o.tasks.isRunning(taskId)) await this.o.storage.delete(taskId);
      stored = undefined;
      complete = false;
    }

    if (rangeHeader !== undefined && !complete && !download.prefetch && !this.o.tasks.isRunning(taskId)) {
      // A lazy read (Nydus) without prefetch: serve it from the pieces we hold, or fetch just the
      // range from the origin; never start a whole-blob download for it.
      if (stored && this.servePartial(res, stored, rangeHeader, taskId)) return;
      res.setHeader(H.taskId, taskId);
      await forward(req, res, url, remote ? this.upstreams.chosen : this.upstreams.trusted, this.lifetime.signal);
      return;
    }

    let stream: PieceStream | undefined;
    let answered = false;
    let markStarted!: () => void;
    const started = new Promise<void>((resolve) => (markStarted = resolve));
    const onStarted = (task: TaskStore, present: PieceInfo[]) => {
      if (answered) return;
      answered = true;
      stream = this.startResponse(res, task, present, rangeHeader, taskId, complete, blobDigest !== undefined && !complete);
      markStarted();
    };
    const dl = this.o.tasks
      .download({ download, remote, stream: true, signal: this.lifetime.signal, onStarted, onPiece: (_t, p, data) => stream?.piece(p, data) })
      .then(
        () => ({ ok: true as const }),
        (e: unknown) => ({ ok: false as const, error: e }),
      );
    const first = await Promise.race([dl, started.then(() => undefined)]);
    if (!answered) {
      // Failed before the layout was known: nothing was sent yet, so the status can say why.
      answered = true;
      if (first && !first.ok) return this.failDownload(req, res, taskId, first.error);
      return sendError(res, 502, "dfdaemon", "download ended before it started");
    }
    if (!stream) {
      // 416 already sent; the download goes on for the next reader.
      void dl.then((r) => (r.ok ? undefined : this.logFailure(taskId, r.error)));
      return;
    }
    const s = stream;
    const outcome = await Promise.race([s.written.then((w) => (w ? "written" : "gone")), dl.then((r) => (r.ok ? "downloaded" : "failed"))]);
    if (outcome === "gone") {
      void dl.then((r) => (r.ok ? undefined : this.logFailure(taskId, r.error)));
      return;
    }
    if (outcome === "written" && !s.holdsBack) return s.finish();
    const r = await dl;
    if (!r.ok) {
      // Headers are out: cutting the connection is the only way to tell the client.
      this.metrics.requestFailureTotal.inc();
      await this.afterFailure(taskId, r.error);
      res.destroy();
      return;
    }
    if (blobDigest) this.verified.add(taskId);
    if (await s.written) s.finish();
  }

  private startResponse(res: ServerResponse, task: TaskStore, present: PieceInfo[], rangeHeader: string | undefined, taskId: string, complete: boolean, verifyFirst: boolean): PieceStream | undefined {
    const size = task.meta.contentLength;
    const range = parseRange(rangeHeader, size);
    const headers = this.blobHeaders(task, taskId, complete);
    if (range.kind === "unsatisfiable") {
      res.writeHead(416, { ...headers, "content-range": `bytes */${size}`, "content-length": 0 });
      res.end();
      return undefined;
    }
    const [start, end] = range.kind === "range" ? [range.start, range.end] : [0, size - 1];
    if (range.kind === "range") headers["content-range"] = `bytes ${start}-${end}/${size}`;
    headers["content-length"] = String(end - start + 1);
    res.writeHead(range.kind === "range" ? 206 : 200, headers);
    // Only a whole-blob answer can be checked against the digest before its last bytes go out.
    const stream = new PieceStream(res, start, end, range.kind === "none" && verifyFirst ? HOLD_BACK : 0);
    stream.started(task, present);
    return stream;
  }

  private blobHeaders(task: TaskStore, taskId: string, complete: boolean): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const k of KEPT_RESPONSE_HEADERS) {
      const v = task.meta.responseHeader[k];
      if (v !== undefined) headers[k] = v;
    }
    headers["content-type"] ??= "application/octet-stream";
    headers["accept-ranges"] = "bytes";
    headers[H.taskId] = taskId;
    headers[H.serverIp] = this.o.serverIp;
    if (complete) headers[H.taskDownloadFinished] = "true";
    return headers;
  }

  /** Serves a range from a partially stored task when every covering piece is present. */
  private servePartial(res: ServerResponse, task: TaskStore, rangeHeader: string, taskId: string): boolean {
    const size = task.meta.contentLength;
    const range = parseRange(rangeHeader, size);
    if (range.kind !== "range") return false;
    const { first, last } = coveringPieces(range.start, range.end, task.meta.pieceLength);
    const have = new Set(task.finished().map((p) => p.number));
    for (let n = first; n <= last; n++) if (!have.has(n)) return false;
    const stream = this.startResponse(res, task, task.finished(), rangeHeader, taskId, false, false);
    void stream?.written.then((ok) => ok && stream.finish());
    return true;
  }

  /** Whether a stored task's bytes match the blob digest (computed once per process). */
  private async contentMatches(task: TaskStore, blobDigest: string): Promise<boolean> {
    if (this.verified.has(task.id)) return true;
    // The pipeline verified the digest before marking the task succeeded.
    if (task.meta.digest === blobDigest) {
      this.verified.add(task.id);
      return true;
    }
    const algorithm = blobDigest.slice(0, blobDigest.indexOf(":"));
    const ok = (await task.digest(algorithm)) === blobDigest;
    if (ok) this.verified.add(task.id);
    return ok;
  }

  private async failDownload(req: IncomingMessage, res: ServerResponse, taskId: string, e: unknown): Promise<void> {
    this.metrics.requestFailureTotal.inc();
    await this.afterFailure(taskId, e);
    this.fail(req, res, e);
  }

  /** A task whose bytes failed the digest is removed, so it is neither served nor shared. */
  private async afterFailure(taskId: string, e: unknown): Promise<void> {
    this.logFailure(taskId, e);
    if (e instanceof DownloadError && /digest mismatch/.test(e.message) && !this.o.tasks.isRunning(taskId)) {
      this.verified.delete(taskId);
      await this.o.storage.delete(taskId).catch(() => undefined);
    }
  }

  private logFailure(taskId: string, e: unknown): void {
    this.o.log.warn({ taskId, err: e instanceof Error ? e.message : String(e) }, "proxy download failed");
  }

  async close(): Promise<void> {
    this.lifetime.abort();
    await this.upstreams.close();
  }
}

function parseAbsolute(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ProxyRequestError(`request target "${raw.slice(0, 200)}" is neither a path nor an absolute http(s) URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new ProxyRequestError(`unsupported scheme ${u.protocol} in request target`);
  return u;
}

function findSsrf(e: unknown): string | undefined {
  for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    if (cur.name === "SsrfError" || /SSRF policy/.test(cur.message)) return cur.message;
    const be = (cur as { backend?: unknown }).backend;
    if (be instanceof Error && /SSRF policy/.test(be.message)) return be.message;
  }
  return undefined;
}

/** CONNECT authority `host:port` (IPv6 in brackets). */
function parseAuthority(text: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (!m?.[1] || !m[2]) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1].replace(/^\[|\]$/g, ""), port };
}

function rawResponse(socket: Socket, status: number, text: string, extra = ""): void {
  if (socket.writable) socket.end(`HTTP/1.1 ${status} ${text}\r\n${extra}${H.errorType}: proxy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  else socket.destroy();
}

export async function startProxy(o: ProxyOptions): Promise<ProxyHandle> {
  const c = o.config;
  const ca = await CertificateAuthority.open({ caCert: c.server.caCert, caKey: c.server.caKey }, { certPath: join(o.caDir, "ca.crt"), keyPath: join(o.caDir, "ca.key") });
  const proxy = new Proxy(o, ca);
  const bufferSize = parseSize(c.readBufferSize);
  const serverOptions = { maxHeaderSize: MAX_HEADER_SIZE, insecureHTTPParser: false, requireHostHeader: true, highWaterMark: bufferSize };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => void proxy.handle(req, res);
  const onClientError = (err: Error & { code?: string }, socket: Socket) => {
    // Malformed framing (Content-Length with Transfer-Encoding, bad chunking), oversized headers.
    if (err.code === "HPE_HEADER_OVERFLOW") return rawResponse(socket, 431, "Request Header Fields Too Large");
    if (err.code === "ECONNRESET") return socket.destroy();
    rawResponse(socket, 400, "Bad Request");
  };
  const server: Server = createServer(serverOptions, onRequest);
  // Requests inside CONNECT tunnels: same handling, target from the tunnel.
  const inner: Server = createServer(serverOptions, onRequest);
  server.on("clientError", onClientError);
  inner.on("clientError", onClientError);
  const open = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    open.add(s);
    s.once("close", () => open.delete(s));
  });

  server.on("connect", (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on("error", () => undefined);
    if (!proxy.allowRequest()) return rawResponse(socket, 429, "Too Many Requests");
    if (!proxy.authorized(req)) return rawResponse(socket, 407, "Proxy Authentication Required", 'Proxy-Authenticate: Basic realm="damselfly"\r\n');
    const authority = parseAuthority(req.url ?? "");
    if (!authority) return rawResponse(socket, 400, "Bad Request");
    let tls: TLSSocket;
    try {
      const secureContext = ca.contextFor(authority.host);
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) socket.unshift(head);
      tls = new TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: ["http/1.1"] });
    } catch (e) {
      o.log.warn({ host: authority.host, err: e instanceof Error ? e.message : String(e) }, "CONNECT interception failed");
      socket.destroy();
      return;
    }
    tls.on("error", () => socket.destroy());
    proxy.tunnels.set(tls, authority);
    inner.emit("connection", tls);
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(c.server.port, c.server.ip, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  o.log.info({ port, ip: c.server.ip, ca: ca.certPath, mirror: c.registryMirror.addr }, "proxy started");
  return {
    port,
    caCertPath: ca.certPath,
    caCertPem: ca.certPem,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of open) s.destroy();
      inner.closeAllConnections();
      server.closeAllConnections();
      await closed;
      await proxy.close();
    },
  };
}
