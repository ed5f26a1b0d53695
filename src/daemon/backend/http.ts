// http/https back-to-source. Stat and https (and origins without Range) go through undici:
// keep-alive pools, redirects, Range requests and retries with exponential backoff for network
// errors, 408, 429 and 5xx. Pieces of plain-http origins are fetched by the native core straight
// into the task store (`route` + `fetchPiece`): the name is resolved here, checked against the
// SSRF policy, and only the address crosses to Rust. When a remote party chose the URL (seed
// trigger, proxy) every connection — undici's at connect time, native ones at `route` — is
// checked against the SSRF policy. A request with a pin (pin.ts) carries it as a precondition
// on both paths, and an answer of another version fails with OriginChangedError.
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Readable } from "node:stream";
import { Agent, interceptors, request, type Dispatcher } from "undici";
import { SsrfError, type SsrfPolicy } from "../../common/ssrf.js";
import { VERSION } from "../../common/version.js";
import { isNativeError, type NativePieceInfo, type NativeTaskStore } from "../../native/index.js";
import { mismatch, originChanged, OriginChangedError, preconditionHeaders, PRECONDITION_HEADERS, totalLength } from "./pin.js";
import { BackendError, isTemporaryStatus, type Backend, type BackendRequest, type ByteRange, type GetResult, type OriginRoute, type StatResult } from "./types.js";
import { errorMessage } from "../../common/errors.js";
import { withTraceHeaders } from "../../common/tracing.js";

export interface HttpBackendOptions {
  maxRetries: number;
  /** Extra headers for every request (backend.requestHeader). */
  requestHeader?: Record<string, string>;
  ssrf?: SsrfPolicy | undefined;
  /** Base delay for the exponential backoff between retries. */
  retryBaseMs?: number;
}

const MAX_REDIRECTIONS = 10;
const REDIRECT_STATUSES = new Set([300, 301, 302, 303, 307, 308]);
/** Credentials that must not follow a redirect to another origin (as undici's redirect handler does). */
const CROSS_ORIGIN_DROPPED = new Set(["authorization", "cookie", "proxy-authorization", "host"]);
/** Headers the native client writes itself (the pin's preconditions too) or that make no sense on a ranged GET. */
const NATIVE_OWNED = new Set(["host", "range", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect", ...PRECONDITION_HEADERS]);
/** Native errors worth another try: the network, not the origin's answer. */
const NATIVE_TEMPORARY = new Set(["DF_IO", "DF_TIMEOUT"]);

function flattenHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : v;
  return out;
}

/** Drops a response body we do not want; its abort error must not become an unhandled one. */
export function discard(body: Readable): void {
  body.on("error", () => undefined);
  body.destroy();
}

export class HttpBackend implements Backend {
  readonly schemes = ["http", "https"] as const;
  private readonly dispatcher: Dispatcher;
  private readonly agent: Agent;

  constructor(private readonly options: HttpBackendOptions) {
    const agentOptions: Agent.Options = { keepAliveTimeout: 60_000, connections: 1024, headersTimeout: 60_000, bodyTimeout: 360_000 };
    this.agent = options.ssrf ? options.ssrf.agent(agentOptions) : new Agent(agentOptions);
    this.dispatcher = this.agent.compose(interceptors.redirect({ maxRedirections: MAX_REDIRECTIONS }));
  }

  async stat(req: BackendRequest): Promise<StatResult> {
    // A one-byte ranged GET tells the total length through Content-Range even where HEAD is
    // not supported or lies (some object stores); fall back to a plain GET's Content-Length.
    // Redirects are followed here, one hop at a time, so the final URL is known: piece requests
    // then go there directly (native ones cannot follow redirects themselves).
    let url = req.url;
    let headers = req.headers;
    for (let hops = 0; ; hops++) {
      const res = await this.send({ ...req, url, headers }, { start: 0, length: 1 }, true);
      discard(res.body);
      if (REDIRECT_STATUSES.has(res.statusCode)) {
        const location = res.headers.location;
        if (!location) throw new BackendError(`${req.url}: origin answered ${res.statusCode} without a Location`, res.statusCode, res.headers);
        if (hops >= MAX_REDIRECTIONS) throw new BackendError(`${req.url}: more than ${MAX_REDIRECTIONS} redirects`, res.statusCode, res.headers);
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          throw new BackendError(`${req.url}: origin redirected to an invalid URL ${JSON.stringify(location)}`, res.statusCode, res.headers);
        }
        if (next.protocol !== "http:" && next.protocol !== "https:") throw new BackendError(`${req.url}: origin redirected to unsupported ${next.protocol} URL`, res.statusCode, res.headers);
        headers = headersAfterRedirect(url, next.href, headers);
        url = next.href;
        continue;
      }
      let contentLength: number | undefined;
      const cr = /\/(\d+)$/.exec(res.headers["content-range"] ?? "");
      if (res.statusCode === 206 && cr?.[1]) contentLength = Number(cr[1]);
      else if (res.statusCode === 200 && res.headers["content-length"] !== undefined) contentLength = Number(res.headers["content-length"]);
      else if (res.statusCode === 416) contentLength = 0;
      return { contentLength, statusCode: res.statusCode === 206 ? 200 : res.statusCode, headers: res.headers, rangeSupported: res.statusCode === 206 || res.statusCode === 416, url };
    }
  }

  async route(url: string, requested: string, headers: Record<string, string>): Promise<OriginRoute | undefined> {
    const u = new URL(url);
    if (u.protocol !== "http:") return undefined;
    const addr = await resolveOriginAddr(u, requested, this.options.ssrf);
    const merged = headersAfterRedirect(requested, url, this.mergedHeaders(headers));
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(merged)) if (!NATIVE_OWNED.has(k)) out[k] = v;
    return {
      addr,
      // A Host the user set survives as long as no redirect moved the request elsewhere.
      host: merged.host ?? u.host,
      path: `${u.pathname}${u.search}`,
      url: requested,
      // The route serves every piece of this back-to-source: they carry its trace context.
      headers: withTraceHeaders(out),
    };
  }

  fetchPiece(route: OriginRoute, store: NativeTaskStore, number: number, signal?: AbortSignal): Promise<NativePieceInfo> {
    return fetchPieceNatively(route, store, number, signal, { maxRetries: this.options.maxRetries, retryBaseMs: this.options.retryBaseMs, toError: (e) => nativeToBackendError(route.url, e, signal) });
  }

  /** Every request's headers: ours, then the backend's configured ones, then the caller's (names lower-cased). */
  private mergedHeaders(headers: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const h of [{ "user-agent": `damselfly/${VERSION}` }, this.options.requestHeader ?? {}, headers]) for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
    return out;
  }

  private backoff(attempt: number): Promise<void> {
    return backoff(attempt, this.options.retryBaseMs);
  }

  async get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult> {
    return this.send(req, req.range, false);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async send(req: BackendRequest, range: ByteRange | undefined, forStat: boolean): Promise<GetResult> {
    const headers: Record<string, string> = withTraceHeaders({ "user-agent": `damselfly/${VERSION}`, ...this.options.requestHeader, ...req.headers });
    if (req.pin) {
      // The pin's precondition rides on the request we make anyway: no extra round trip.
      for (const k of Object.keys(headers)) if (PRECONDITION_HEADERS.has(k.toLowerCase())) delete headers[k];
      Object.assign(headers, preconditionHeaders(req.pin));
    }
    if (range) headers.range = `bytes=${range.start}-${range.start + range.length - 1}`;
    let attempt = 0;
    for (;;) {
      try {
        // stat follows redirects itself (to learn the final URL); other requests let undici.
        const res = await request(req.url, { method: "GET", headers, dispatcher: forStat ? this.agent : this.dispatcher, signal: req.signal });
        const resHeaders = flattenHeaders(res.headers);
        if (req.pin && (res.statusCode === 412 || res.statusCode === 200 || res.statusCode === 206)) {
          const whole = !range || (range.start === 0 && range.length === req.pin.contentLength);
          const why = mismatch(req.pin, res.statusCode, resHeaders, totalLength(res.statusCode, resHeaders, whole));
          if (why !== undefined) {
            discard(res.body);
            throw originChanged(req.url, why, res.statusCode, resHeaders);
          }
        }
        const ok = res.statusCode === 200 || res.statusCode === 206 || (forStat && (res.statusCode === 416 || REDIRECT_STATUSES.has(res.statusCode)));
        if (!ok) {
          discard(res.body);
          throw new BackendError(`${req.url}: origin answered ${res.statusCode}`, res.statusCode, resHeaders, isTemporaryStatus(res.statusCode));
        }
        if (range && !forStat && res.statusCode !== 206) {
          // The origin ignored Range: only acceptable when it sent exactly the bytes we asked for.
          if (!(range.start === 0 && Number(resHeaders["content-length"]) === range.length)) {
            discard(res.body);
            throw new BackendError(`${req.url}: origin does not support Range requests (answered ${res.statusCode})`, res.statusCode, resHeaders);
          }
        }
        return { statusCode: res.statusCode, headers: resHeaders, body: res.body };
      } catch (e) {
        const err = e instanceof BackendError ? e : new BackendError(`${req.url}: ${errorMessage(e)}`, undefined, {}, !(e instanceof Error && e.name === "SsrfError") && !req.signal?.aborted);
        if (!err.temporary || attempt >= this.options.maxRetries) throw err;
        attempt++;
        await this.backoff(attempt);
      }
    }
  }
}

/** The exponential backoff before retry `attempt` (from 1), jittered. */
function backoff(attempt: number, baseMs = 200): Promise<void> {
  return new Promise((r) => setTimeout(r, baseMs * 2 ** (attempt - 1) * (0.5 + Math.random())));
}

/**
 * The `ip:port` (`[v6]:port`) the native origin client connects to for `u`: the name resolved
 * here and checked against the SSRF policy, so the native client never resolves names.
 * Errors name `requested` (the URL the download asked for), never `u` (it may carry a signature).
 */
export async function resolveOriginAddr(u: URL, requested: string, ssrf: SsrfPolicy | undefined): Promise<string> {
  const name = u.hostname.replace(/^\[|\]$/g, "");
  let ip: string;
  if (isIP(name)) {
    ip = name;
  } else {
    let addresses: Array<{ address: string }>;
    try {
      addresses = await lookup(name, { all: true });
    } catch (e) {
      throw new BackendError(`${requested}: ${errorMessage(e)}`, undefined, {}, true);
    }
    const usable = ssrf ? addresses.filter((a) => ssrf.isAllowed(a.address)) : addresses;
    const first = usable[0];
    if (!first) throw new BackendError(`${requested}: ${new SsrfError(addresses[0]?.address ?? "unresolved", name).message}`, undefined);
    ip = first.address;
  }
  if (ssrf && !ssrf.isAllowed(ip)) throw new BackendError(`${requested}: ${new SsrfError(ip, name).message}`, undefined);
  const port = u.port || (u.protocol === "https:" ? "443" : "80");
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export interface NativeFetchOptions {
  maxRetries: number;
  retryBaseMs?: number | undefined;
  /** The native failure as the backend's error (the URL named, nothing secret). */
  toError: (e: unknown) => BackendError;
  /** The request target of each attempt, when it is not the route's (a signature made per request). */
  path?: () => Promise<string>;
}

/**
 * One piece over `route` straight into the task's native store, retried with backoff while the
 * failure is temporary (the network, 408, 429, 5xx).
 */
export async function fetchPieceNatively(route: OriginRoute, store: NativeTaskStore, number: number, signal: AbortSignal | undefined, opts: NativeFetchOptions): Promise<NativePieceInfo> {
  let attempt = 0;
  const pin = route.pin && { etag: route.pin.etag, lastModified: route.pin.lastModified };
  for (;;) {
    try {
      const path = opts.path ? await opts.path() : route.path;
      return await store.fetchFromOrigin({ addr: route.addr, host: route.host, path, headers: route.headers, pin, number, connectTimeoutMs: 10_000, readTimeoutMs: 60_000 }, signal);
    } catch (e) {
      // Our own disk failing the piece's write (full, or an I/O error) is not the origin's
      // error: it goes to the caller as it is, which makes room or fetches the piece again.
      if (isNativeError(e) && (e.code === "DF_NO_SPACE" || e.code === "DF_DEVICE_IO")) throw e;
      const err = opts.toError(e);
      if (!err.temporary || attempt >= opts.maxRetries) throw err;
      attempt++;
      await backoff(attempt, opts.retryBaseMs);
    }
  }
}

/** Headers for the next hop of a redirect: credentials and Host stay with the origin they were meant for. */
export function headersAfterRedirect(from: string, to: string, headers: Record<string, string>): Record<string, string> {
  if (new URL(from).origin === new URL(to).origin) return headers;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (!CROSS_ORIGIN_DROPPED.has(k.toLowerCase())) out[k] = v;
  return out;
}

/** A native origin failure as the BackendError the JS path would have thrown for it. */
export function nativeToBackendError(url: string, e: unknown, signal?: AbortSignal): BackendError {
  if (e instanceof BackendError) return e;
  const message = `${url}: ${errorMessage(e)}`;
  if (!isNativeError(e)) return new BackendError(message, undefined, {}, false);
  if (e.code === "DF_ORIGIN_CHANGED") return new OriginChangedError(message, e.statusCode, e.headers ?? {}, false);
  if (e.code === "DF_BACKEND") {
    const status = e.statusCode;
    // A 200 here means the origin ignored Range: asking again will not change that.
    return new BackendError(message, status, e.headers ?? {}, status !== undefined && status !== 200 && isTemporaryStatus(status));
  }
  return new BackendError(message, undefined, {}, NATIVE_TEMPORARY.has(e.code) && !signal?.aborted);
}
