// dfdaemon's HTTP(S) proxy and registry mirror (Dragonfly's port 4001):
// - registry-mirror mode: origin-form requests (`GET /v2/…`); the upstream comes from
//   X-Dragonfly-Registry, then containerd's `?ns=`, then proxy.registryMirror.addr (a registry
//   named without a scheme gets one from registry-scheme.ts);
// - Maven/YUM repository mirror (proxy.mirrors, mirrors.ts): origin-form requests under a
//   mirror's prefix go to its upstream; the repository layout, not proxy.rules, picks the swarm;
// - forward proxy: absolute-form requests (`GET http://host/…`);
// - CONNECT to a host the proxy intercepts (intercept.ts): TLS is terminated with a per-host
//   certificate from our CA and the requests inside the tunnel are handled like forward-proxy
//   requests to https://host; a CONNECT to any other host is a plain TCP tunnel (tunnel.ts).
// GETs whose URL matches proxy.rules go through the swarm (TaskManager) and stream to the
// client as pieces land; everything else is forwarded directly and never stored.
// Every answer the proxy makes up itself is counted and logged by reason (refusals.ts): a
// runtime falls back to the registry without a word, and the operator must learn why.
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
import { redactUrl } from "../../common/redact-url.js";
import { remoteFetchPolicy, type SsrfPolicy } from "../../common/ssrf.js";
import { TokenBucket } from "../../common/token-bucket.js";
import { Download, TaskType } from "../../gen/common/v2/common.js";
import type { DaemonConfig } from "../config.js";
import { parseSize } from "../config.js";
import type { Storage } from "../storage/storage.js";
import type { PieceInfo, TaskStore } from "../storage/types.js";
import { DownloadError, type TaskManager } from "../task/manager.js";
import { taskIdOf } from "../task/task-id.js";
import { CertificateAuthority } from "./ca.js";
import { InterceptPolicy } from "./intercept.js";
import { dialTunnel, splice } from "./tunnel.js";
import { DEFAULT_FILTERED_QUERY_PARAMS, H, ProxyRequestError, readDragonflyHeaders, single, upstreamRequestHeaders, type DragonflyRequestOptions } from "./headers.js";
import { proxyMetrics, type ProxyMetrics } from "./metrics.js";
import { coveringPieces, parseRange } from "./range.js";
import { RateLimitedLog } from "./rate-limited-log.js";
import { requestTarget, type Target } from "./target.js";
import { classifyFailure, type FailureAnswer, type RefusalReason } from "./refusals.js";
import { dispatcherProbe, parseConfiguredRegistries, parseRegistryUrl, RegistrySchemes } from "./registry-scheme.js";
import { compileMirrors, isImmutable, publishedDigest, type Mirror } from "./mirrors.js";
import { compileRules, downloadUrl, matchRule, type Rule } from "./rules.js";
import { PieceStream } from "./stream.js";
import { createUpstreams, forward, sendError, type Upstreams } from "./upstream.js";
import { errorMessage } from "../../common/errors.js";

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

/** What a refusal's log line says about the request. */
interface RequestInfo {
  method?: string | undefined;
  url?: string | undefined;
  upstream?: URL | undefined;
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

class Proxy {
  private readonly rules: Rule[];
  private readonly metrics: ProxyMetrics;
  private readonly bucket: TokenBucket;
  private readonly upstreams: Upstreams;
  private readonly lifetime = new AbortController();
  private readonly expectedAuth: Buffer | undefined;
  /** Tasks whose stored content we checked in this process, with the digest it matched. */
  private readonly verified = new Map<string, string>();
  private readonly mirrors: Mirror[];
  private readonly mirror: URL;
  private readonly schemes: RegistrySchemes;
  private readonly refusalLog: RateLimitedLog;
  /** For upstreams a client chose: forward-proxy URLs, registries it names, CONNECT tunnels. */
  readonly ssrf: SsrfPolicy;
  readonly tunnels = new WeakMap<Socket, { host: string; port: number }>();

  constructor(
    private readonly o: ProxyOptions,
    readonly ca: CertificateAuthority,
  ) {
    const c = o.config;
    // Every download in flight listens on the lifetime signal.
    setMaxListeners(0, this.lifetime.signal);
    this.rules = compileRules(c.rules);
    this.mirrors = compileMirrors(c.mirrors);
    this.metrics = proxyMetrics(o.registry);
    this.bucket = new TokenBucket(c.server.requestRateLimit);
    this.refusalLog = new RateLimitedLog(o.log);
    let mirrorCa: string | undefined;
    if (c.registryMirror.cert) {
      try {
        mirrorCa = readFileSync(c.registryMirror.cert, "utf8");
      } catch (e) {
        throw new ConfigError(`proxy.registryMirror.cert: ${errorMessage(e)}`);
      }
    }
    try {
      // A scheme-less addr has always meant https.
      const addr = c.registryMirror.addr;
      this.mirror = parseRegistryUrl(addr.includes("://") ? addr : `https://${addr}`, "proxy.registryMirror.addr");
    } catch (e) {
      throw new ConfigError(errorMessage(e));
    }
    this.ssrf = remoteFetchPolicy(o.allowedCidrs);
    this.upstreams = createUpstreams(this.ssrf, mirrorCa);
    this.schemes = new RegistrySchemes({ configured: [...parseConfiguredRegistries(c.registryMirror.registries), this.mirror], probe: dispatcherProbe(this.upstreams.chosen) });
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
    const allowed = this.bucket.take();
    if (!allowed) this.metrics.requestRateLimitedTotal.inc();
    return allowed;
  }

  /**
   * Counts one request as Dragonfly does: by the scheme of its absolute-form URL ("http" for an
   * origin-form one, a mirror's), "https" inside a CONNECT tunnel, and by method.
   */
  countRequest(req: IncomingMessage, inTunnel: boolean): void {
    const scheme = inTunnel ? "https" : (/^([a-z][a-z0-9+.-]*):\/\//i.exec(req.url ?? "")?.[1]?.toLowerCase() ?? "http");
    this.metrics.requestTotal.inc({ scheme, method: req.method ?? "" });
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const tunnel = this.tunnels.get(req.socket);
    this.countRequest(req, tunnel !== undefined);
    let target: Target | undefined;
    try {
      if (!this.allowRequest()) return this.answer(req, res, { status: 429, type: "proxy", message: "too many requests", reason: "rate_limit" });
      // Inside a tunnel the client already authenticated on CONNECT.
      if (!tunnel && !this.authorized(req)) {
        this.metrics.requestFailureTotal.inc();
        return this.answer(req, res, { status: 407, type: "proxy", message: "proxy authentication required", headers: { "proxy-authenticate": 'Basic realm="damselfly"' }, reason: "auth" });
      }
      if (req.rawHeaders.filter((_, i) => i % 2 === 0 && req.rawHeaders[i]?.toLowerCase() === "host").length > 1) throw new ProxyRequestError("more than one Host header");
      target = await this.target(req, tunnel);
      // Under a repository mirror the layout alone decides: no rule or header may send its
      // metadata through the swarm, where a stale copy would be served (mirrors.ts).
      const rule = target.mirror ? undefined : matchRule(this.rules, target.url);
      const opts = readDragonflyHeaders(req.headers, rule?.filteredQueryParams ?? DEFAULT_FILTERED_QUERY_PARAMS);
      const p2p = target.mirror ? isImmutable(target.mirror, target.url) : rule !== undefined || opts.useP2P;
      if (req.method === "GET" && p2p) {
        this.metrics.requestViaDfdaemonTotal.inc();
        await this.viaSwarm(req, res, target, rule, opts);
      } else {
        await forward(req, res, target.url, target.chosen ? this.upstreams.chosen : this.upstreams.trusted, this.lifetime.signal);
      }
    } catch (e) {
      this.metrics.requestFailureTotal.inc();
      this.fail(req, res, e, target);
    }
  }

  private fail(req: IncomingMessage, res: ServerResponse, e: unknown, target: Target | undefined): void {
    this.answer(req, res, classifyFailure(e), target);
  }

  /** Sends an error answer; one the proxy made up itself (it has a reason) is a refusal. */
  private answer(req: IncomingMessage, res: ServerResponse, a: FailureAnswer, target?: Target): void {
    if (a.reason) this.refused(a.reason, a.status, { method: req.method, url: req.url, upstream: target?.url }, a.message);
    sendError(res, a.status, a.type, a.message, a.headers);
  }

  /** Counts a refusal by reason and logs it, at most one line per reason per 10 s. */
  refused(reason: RefusalReason, status: number, request: RequestInfo, detail?: string): void {
    this.metrics.requestRefusedTotal.inc({ reason });
    const fields = { method: request.method, url: redactUrl(request.url), upstream: redactUrl(request.upstream?.href), status, reason, err: detail };
    this.refusalLog.warn(reason, fields, "proxy refused a request: a runtime may pull from the registry directly, bypassing the mirror");
  }

  /** Where the request goes, by the request-target form. */
  private target(req: IncomingMessage, tunnel: { host: string; port: number } | undefined): Promise<Target> {
    return requestTarget(req.url ?? "", req.headers, tunnel, this.schemes, this.mirror, this.mirrors);
  }

  /** A GET through the swarm: stream pieces as they land, Range computed over pieces. */
  private async viaSwarm(req: IncomingMessage, res: ServerResponse, target: Target, rule: Rule | undefined, opts: DragonflyRequestOptions): Promise<void> {
    const c = this.o.config;
    const url = downloadUrl(target.url, rule);
    const requestHeader = upstreamRequestHeaders(req.headers);
    for (const k of NOT_FOR_ORIGIN) delete requestHeader[k];
    // A registry blob's digest is in its URL; a Maven artifact's is published next to it.
    // An operator's redirect names the origin; otherwise a client-chosen upstream is remote.
    const remote = target.chosen && !rule?.redirect;
    const dispatcher = remote ? this.upstreams.chosen : this.upstreams.trusted;
    const blobDigest = blobDigestFromUrl(url.href) ?? (target.mirror ? await publishedDigest(target.mirror, url, dispatcher, requestHeader, this.lifetime.signal) : undefined);
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
      await forward(req, res, url, dispatcher, this.lifetime.signal);
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
    // A ranged request with prefetch downloads the whole blob: Dragonfly's prefetch, paced by
    // proxy.prefetchBandwidthLimit rather than download.bandwidthLimit.
    const dl = this.o.tasks
      .download({ download, remote, stream: true, swarmSmall: target.mirror !== undefined, prefetch: rangeHeader !== undefined && download.prefetch, signal: this.lifetime.signal, onStarted, onPiece: (_t, p, data) => stream?.piece(p, data) })
      .then(
        () => ({ ok: true as const }),
        (e: unknown) => ({ ok: false as const, error: e }),
      );
    const first = await Promise.race([dl, started.then(() => undefined)]);
    if (!answered) {
      // Failed before the layout was known: nothing was sent yet, so the status can say why.
      answered = true;
      if (first && !first.ok) return this.failDownload(req, res, taskId, first.error, target);
      return this.answer(req, res, { status: 502, type: "dfdaemon", message: "download ended before it started", reason: "dfdaemon_error" }, target);
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
      const why = classifyFailure(r.error);
      this.refused(why.reason ?? "backend_error", res.statusCode, { method: req.method, url: req.url, upstream: target.url }, `connection cut after the headers: ${why.message}`);
      await this.afterFailure(taskId, r.error);
      res.destroy();
      return;
    }
    if (blobDigest) this.verified.set(taskId, blobDigest);
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
    if (this.verified.get(task.id) === blobDigest) return true;
    // The pipeline verified the digest before marking the task succeeded.
    if (task.meta.digest === blobDigest) {
      this.verified.set(task.id, blobDigest);
      return true;
    }
    const algorithm = blobDigest.slice(0, blobDigest.indexOf(":"));
    const ok = (await task.digest(algorithm)) === blobDigest;
    if (ok) this.verified.set(task.id, blobDigest);
    return ok;
  }

  private async failDownload(req: IncomingMessage, res: ServerResponse, taskId: string, e: unknown, target: Target): Promise<void> {
    this.metrics.requestFailureTotal.inc();
    await this.afterFailure(taskId, e);
    this.fail(req, res, e, target);
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
    this.o.log.warn({ taskId, err: errorMessage(e) }, "proxy download failed");
  }

  async close(): Promise<void> {
    this.lifetime.abort();
    await this.upstreams.close();
  }
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
  const intercept = new InterceptPolicy(c);
  const ca = await CertificateAuthority.open({ caCert: c.server.caCert, caKey: c.server.caKey }, { certPath: join(o.caDir, "ca.crt"), keyPath: join(o.caDir, "ca.key") }, intercept.scope);
  if (ca.generated) o.log.warn({ ca: ca.certPath, dnsNames: intercept.scope.dnsNames, ips: intercept.scope.ips }, "proxy generated a new CA for intercepted hosts: give runtimes that use the proxy for HTTPS the new certificate");
  const proxy = new Proxy(o, ca);
  const bufferSize = parseSize(c.readBufferSize);
  const serverOptions = { maxHeaderSize: MAX_HEADER_SIZE, insecureHTTPParser: false, requireHostHeader: true, highWaterMark: bufferSize };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => void proxy.handle(req, res);
  const onClientError = (err: Error & { code?: string }, socket: Socket) => {
    // Malformed framing (Content-Length with Transfer-Encoding, bad chunking), oversized headers:
    // llhttp's HPE_* codes. Anything else is the connection failing under a request (a client
    // that reset or closed mid-response: EPIPE, ECONNRESET), no request of the client's to
    // refuse and no one to answer; counted as a bad request it made the refusal counter grow
    // with every client that hung up.
    if (!err.code?.startsWith("HPE_")) return socket.destroy();
    if (err.code === "HPE_HEADER_OVERFLOW") {
      proxy.refused("header_too_large", 431, {}, `request headers over ${MAX_HEADER_SIZE} bytes`);
      return rawResponse(socket, 431, "Request Header Fields Too Large");
    }
    proxy.refused("bad_request", 400, {}, `malformed HTTP request: ${err.code ?? err.message}`);
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
    const refuse = (reason: RefusalReason, status: number, text: string, extra?: string) => {
      proxy.refused(reason, status, { method: req.method, url: req.url }, text);
      rawResponse(socket, status, text, extra);
    };
    proxy.countRequest(req, false);
    if (!proxy.allowRequest()) return refuse("rate_limit", 429, "Too Many Requests");
    if (!proxy.authorized(req)) return refuse("auth", 407, "Proxy Authentication Required", 'Proxy-Authenticate: Basic realm="damselfly"\r\n');
    const authority = parseAuthority(req.url ?? "");
    if (!authority) return refuse("bad_request", 400, "Bad Request");
    if (!intercept.intercepts(authority.host, authority.port)) {
      void dialTunnel(authority.host, authority.port, proxy.ssrf).then(
        (upstream) => {
          if (!socket.writable) return upstream.destroy();
          socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
          splice(socket, upstream, head);
        },
        (e: unknown) => {
          const why = classifyFailure(e);
          proxy.refused(why.reason ?? "upstream_unreachable", why.status, { method: req.method, url: req.url }, why.message);
          rawResponse(socket, why.status, why.status === 403 ? "Forbidden" : "Bad Gateway");
        },
      );
      return;
    }
    void ca.contextFor(authority.host).then(
      (secureContext) => {
        socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        if (head.length > 0) socket.unshift(head);
        const tls = new TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: ["http/1.1"] });
        tls.on("error", () => socket.destroy());
        proxy.tunnels.set(tls, authority);
        inner.emit("connection", tls);
      },
      (e: unknown) => {
        o.log.warn({ host: authority.host, err: errorMessage(e) }, "CONNECT interception failed");
        socket.destroy();
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(c.server.port, c.server.ip, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  o.log.info({ port, ip: c.server.ip, ca: ca.certPath, mirror: redactUrl(c.registryMirror.addr), repositories: c.mirrors.map((m) => `${m.prefix} ${m.kind} ${redactUrl(m.upstream)}`) }, "proxy started");
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
