// http/https back-to-source through undici: keep-alive pools, redirects, Range requests and
// retries with exponential backoff for network errors, 408, 429 and 5xx. When a remote party
// chose the URL (seed trigger, proxy) the dispatcher enforces the SSRF policy at connect time.
import type { Readable } from "node:stream";
import { Agent, interceptors, request, type Dispatcher } from "undici";
import type { SsrfPolicy } from "../../common/ssrf.js";
import { VERSION } from "../../common/version.js";
import { BackendError, type Backend, type BackendRequest, type ByteRange, type GetResult, type StatResult } from "./types.js";

export interface HttpBackendOptions {
  maxRetries: number;
  /** Extra headers for every request (backend.requestHeader). */
  requestHeader?: Record<string, string>;
  ssrf?: SsrfPolicy | undefined;
  /** Base delay for the exponential backoff between retries. */
  retryBaseMs?: number;
}

const MAX_REDIRECTIONS = 10;

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

function isTemporaryStatus(code: number): boolean {
  return code === 408 || code === 429 || code >= 500;
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
    const res = await this.send(req, { start: 0, length: 1 }, true);
    discard(res.body);
    let contentLength: number | undefined;
    const cr = /\/(\d+)$/.exec(res.headers["content-range"] ?? "");
    if (res.statusCode === 206 && cr?.[1]) contentLength = Number(cr[1]);
    else if (res.statusCode === 200 && res.headers["content-length"] !== undefined) contentLength = Number(res.headers["content-length"]);
    else if (res.statusCode === 416) contentLength = 0;
    return { contentLength, statusCode: res.statusCode === 206 ? 200 : res.statusCode, headers: res.headers, rangeSupported: res.statusCode === 206 || res.statusCode === 416 };
  }

  async get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult> {
    return this.send(req, req.range, false);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async send(req: BackendRequest, range: ByteRange | undefined, forStat: boolean): Promise<GetResult> {
    const headers: Record<string, string> = { "user-agent": `damselfly/${VERSION}`, ...this.options.requestHeader, ...req.headers };
    if (range) headers.range = `bytes=${range.start}-${range.start + range.length - 1}`;
    let attempt = 0;
    for (;;) {
      try {
        const res = await request(req.url, { method: "GET", headers, dispatcher: this.dispatcher, signal: req.signal });
        const resHeaders = flattenHeaders(res.headers);
        const ok = res.statusCode === 200 || res.statusCode === 206 || (forStat && res.statusCode === 416);
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
        const err = e instanceof BackendError ? e : new BackendError(`${req.url}: ${e instanceof Error ? e.message : String(e)}`, undefined, {}, !(e instanceof Error && e.name === "SsrfError") && !req.signal?.aborted);
        if (!err.temporary || attempt >= this.options.maxRetries) throw err;
        attempt++;
        const base = this.options.retryBaseMs ?? 200;
        await new Promise((r) => setTimeout(r, base * 2 ** (attempt - 1) * (0.5 + Math.random())));
      }
    }
  }
}
