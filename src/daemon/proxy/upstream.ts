// Direct forwarding for everything that does not go through P2P (manifests, token endpoints,
// HEAD, pushes, non-matching paths): the upstream's status, headers and body are passed back
// unchanged (401 + WWW-Authenticate included, so registry auth works through the mirror), with
// backpressure both ways, and nothing is stored. Redirects are passed back, not followed.
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import { rootCertificates } from "node:tls";
import { Agent, type Dispatcher } from "undici";
import type { SsrfPolicy } from "../../common/ssrf.js";
import { downstreamResponseHeaders, H, upstreamRequestHeaders, type ErrorType } from "./headers.js";

export interface Upstreams {
  /** For upstreams the operator configured (registryMirror.addr, rule redirects). */
  trusted: Dispatcher;
  /** For upstreams a client chose (headers, `ns`, forward-proxy URLs): SSRF-checked at connect. */
  chosen: Dispatcher;
  close(): Promise<void>;
}

/** `extraCa` (proxy.registryMirror.cert) is trusted in addition to the system roots. */
export function createUpstreams(ssrf: SsrfPolicy, extraCa?: string): Upstreams {
  const options: Agent.Options = { keepAliveTimeout: 60_000, headersTimeout: 60_000, bodyTimeout: 360_000, connections: 256, ...(extraCa ? { connect: { ca: [...rootCertificates, extraCa] } } : {}) };
  const trusted = new Agent(options);
  const chosen = ssrf.agent(options);
  return { trusted, chosen, close: async () => void (await Promise.all([trusted.close(), chosen.close()])) };
}

export function sendError(res: ServerResponse, status: number, type: ErrorType, message: string, headers: Record<string, string | string[]> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${message}\n`;
  res.writeHead(status, { ...headers, "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body), [H.errorType]: type });
  res.end(res.req.method === "HEAD" ? undefined : body);
}

const BODYLESS = new Set(["GET", "HEAD", "OPTIONS", "DELETE"]);

export async function forward(req: IncomingMessage, res: ServerResponse, target: URL, dispatcher: Dispatcher, signal: AbortSignal): Promise<{ statusCode: number }> {
  const headers = upstreamRequestHeaders(req.headers);
  const hasBody = !BODYLESS.has(req.method ?? "GET") || req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined;
  if (!hasBody) delete headers["content-length"];
  const up = await dispatcher.request({
    origin: target.origin,
    path: `${target.pathname}${target.search}`,
    method: (req.method ?? "GET"),
    headers: { ...headers, host: target.host },
    body: hasBody ? req : null,
    signal,
  });
  res.writeHead(up.statusCode, downstreamResponseHeaders(up.headers));
  if (req.method === "HEAD" || up.statusCode === 204 || up.statusCode === 304) {
    await up.body.dump();
    res.end();
  } else {
    await pipeline(up.body, res);
  }
  return { statusCode: up.statusCode };
}
