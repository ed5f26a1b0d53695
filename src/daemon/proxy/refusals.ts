// Why the proxy refused or could not serve a request, as the small fixed vocabulary of
// dragonfly_client_proxy_request_refused_total{reason}, and the error answer each failure gets.
// A runtime whose mirror request fails falls back to the registry directly without a word
// (containerd does), so every answer the proxy makes up itself must leave a trace; an
// upstream's own answer passed through (401 with its challenge, 404) is not a refusal.
import { DownloadError } from "../task/manager.js";
import { ProxyRequestError, type ErrorType } from "./headers.js";
import { errorMessage } from "../../common/errors.js";

export const REFUSAL_REASONS = [
  /** Malformed request or X-Dragonfly-* header, bad registry address (400). */
  "bad_request",
  /** Refused by policy: X-Dragonfly-Output-Path on the network port (403). */
  "forbidden",
  /** Proxy basic auth missing or wrong (407). */
  "auth",
  /** proxy.server.requestRateLimit exceeded (429). */
  "rate_limit",
  /** Request headers over the proxy's limit (431). */
  "header_too_large",
  /** A client-chosen upstream resolves to an address the SSRF policy refuses (403). */
  "ssrf",
  /** A scheme-less registry that speaks plain HTTP and is neither loopback nor configured (502). */
  "plain_http_registry",
  /** The upstream could not be connected to, or the connection broke (502). */
  "upstream_unreachable",
  /** The upstream answered something the proxy cannot use (no length, bad redirect, wrong bytes; 502). */
  "backend_error",
  /** The daemon itself failed: scheduler unavailable, task not found, internal error (404/502/503). */
  "dfdaemon_error",
] as const;

export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** The error answer for a failure; `reason` is absent when the upstream's answer is passed on. */
export interface FailureAnswer {
  status: number;
  type: ErrorType;
  message: string;
  headers?: Record<string, string>;
  reason?: RefusalReason;
}

/** Headers of an origin's error answer that the client needs (registry auth). */
const KEPT_ERROR_HEADERS = ["www-authenticate", "docker-distribution-api-version", "retry-after", "location"];

/** Connection-level failures, TLS handshakes included (undici, Node's net/tls, the native back-to-source path). */
const UNREACHABLE =
  /ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EPIPE|UND_ERR_CONNECT_TIMEOUT|UND_ERR_SOCKET|UND_ERR_HEADERS_TIMEOUT|ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_VERIFY|SELF_SIGNED|connect timeout|socket hang up|other side closed|SSL routines|self[- ]signed certificate|unable to verify|certificate has expired/i;

export function reasonForStatus(status: number): RefusalReason {
  if (status === 403) return "forbidden";
  if (status === 407) return "auth";
  if (status === 429) return "rate_limit";
  if (status === 431) return "header_too_large";
  if (status >= 400 && status < 500) return "bad_request";
  return "backend_error";
}

/** An error and its causes, outermost first (undici and fetch put the socket's error in `cause`). */
export function causeChain(e: unknown, max = 5): Error[] {
  const out: Error[] = [];
  for (let cur: unknown = e; cur instanceof Error && out.length < max; cur = cur.cause) out.push(cur);
  return out;
}

/** Node's and OpenSSL's error code ("ECONNREFUSED", "ERR_SSL_WRONG_VERSION_NUMBER"), or "". */
export function errorCode(e: Error): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" ? code : "";
}

/** The SSRF refusal somewhere in an error's cause chain (or its BackendError). */
export function findSsrf(e: unknown): string | undefined {
  for (const cur of causeChain(e)) {
    if (cur.name === "SsrfError" || /SSRF policy/.test(cur.message)) return cur.message;
    const be = (cur as { backend?: unknown }).backend;
    if (be instanceof Error && /SSRF policy/.test(be.message)) return be.message;
  }
  return undefined;
}

function isUnreachable(e: unknown): boolean {
  return causeChain(e).some((cur) => UNREACHABLE.test(errorCode(cur)) || UNREACHABLE.test(cur.message));
}

const messageOf = (e: unknown) => errorMessage(e);

/** How the proxy answers a request that failed with `e`, and under which refusal reason. */
export function classifyFailure(e: unknown): FailureAnswer {
  // Before ProxyRequestError: a registry probe refused by the SSRF policy is an SSRF refusal.
  const ssrf = findSsrf(e);
  if (ssrf) return { status: 403, type: "proxy", message: ssrf, reason: "ssrf" };
  if (e instanceof ProxyRequestError) return { status: e.statusCode, type: "proxy", message: e.message, reason: e.reason ?? reasonForStatus(e.statusCode) };
  if (e instanceof DownloadError) {
    const be = e.backend;
    if (e.kind === "backend" && be?.statusCode !== undefined && (be.statusCode < 200 || be.statusCode > 299)) {
      // The origin's status and auth challenge, unchanged (registry auth through the mirror).
      const headers: Record<string, string> = {};
      for (const k of KEPT_ERROR_HEADERS) if (be.headers[k] !== undefined) headers[k] = be.headers[k];
      return { status: be.statusCode, type: "backend", message: `upstream answered ${be.statusCode}`, headers };
    }
    if (e.kind === "backend") return { status: 502, type: "backend", message: e.message, reason: be?.temporary || isUnreachable(e) ? "upstream_unreachable" : "backend_error" };
    // The upstream changed the content mid-download (its 412 answered our pin, not the client).
    if (e.kind === "origin_changed") return { status: 502, type: "backend", message: e.message, reason: "backend_error" };
    if (e.kind === "not_found") return { status: 404, type: "dfdaemon", message: e.message, reason: "dfdaemon_error" };
    if (e.kind === "unavailable") return { status: 503, type: "dfdaemon", message: e.message, reason: "dfdaemon_error" };
    if (e.kind === "no_space") return { status: 507, type: "dfdaemon", message: e.message, reason: "dfdaemon_error" };
    // A digest mismatch is the upstream's wrong bytes, not the daemon's fault.
    if (/digest mismatch/.test(e.message)) return { status: 502, type: "dfdaemon", message: e.message, reason: "backend_error" };
    return { status: 502, type: "dfdaemon", message: e.message, reason: "dfdaemon_error" };
  }
  // Direct forwarding (undici) failed before the upstream answered.
  return { status: 502, type: "backend", message: messageOf(e), reason: isUnreachable(e) ? "upstream_unreachable" : "backend_error" };
}
