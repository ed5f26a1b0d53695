// The X-Dragonfly-* request and response headers of Dragonfly's proxy, and how a proxied request
// becomes a Download. Bad values are refused with 400 naming the header, rather than silently
// replaced by defaults, so a misconfigured runtime is noticed.
import type { IncomingHttpHeaders } from "node:http";
import { MIN_PIECE_LENGTH } from "../../common/piece.js";
import type { RefusalReason } from "./refusals.js";

export const H = {
  tag: "x-dragonfly-tag",
  application: "x-dragonfly-application",
  priority: "x-dragonfly-priority",
  registry: "x-dragonfly-registry",
  filteredQueryParams: "x-dragonfly-filtered-query-params",
  useP2P: "x-dragonfly-use-p2p",
  prefetch: "x-dragonfly-prefetch",
  outputPath: "x-dragonfly-output-path",
  forceHardLink: "x-dragonfly-force-hard-link",
  pieceLength: "x-dragonfly-piece-length",
  contentForCalculatingTaskId: "x-dragonfly-content-for-calculating-task-id",
  enableTaskIdBasedBlobDigest: "x-dragonfly-enable-task-id-based-blob-digest",
  // Response headers.
  taskId: "X-Dragonfly-Task-ID",
  taskDownloadFinished: "X-Dragonfly-Task-Download-Finished",
  serverIp: "X-Dragonfly-Server-IP",
  errorType: "X-Dragonfly-Error-Type",
} as const;

export type ErrorType = "backend" | "proxy" | "dfdaemon";

import { DEFAULT_FILTERED_QUERY_PARAMS } from "../../common/ids.js";

export { DEFAULT_FILTERED_QUERY_PARAMS };

/** A request the proxy refuses itself; the status goes to the client, the reason to the refusal metric. */
export class ProxyRequestError extends Error {
  override name = "ProxyRequestError";
  constructor(
    message: string,
    readonly statusCode = 400,
    /** When the status alone does not tell why (502: plain-HTTP registry or unreachable one). */
    readonly reason?: RefusalReason,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** One value of a header; a header sent twice with different values is ambiguous and refused. */
export function single(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  if (Array.isArray(v)) {
    if (new Set(v).size > 1) throw new ProxyRequestError(`${name}: sent more than once with different values`);
    return v[0];
  }
  return v;
}

function bool(headers: IncomingHttpHeaders, name: string): boolean | undefined {
  const v = single(headers, name)?.trim().toLowerCase();
  if (v === undefined) return undefined;
  if (v === "true") return true;
  if (v === "false") return false;
  throw new ProxyRequestError(`${name}: expected "true" or "false", got "${v}"`);
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3 };

/** Piece length as Dragonfly's bytesize parser reads it ("4mib", "8 MiB", "4194304"). */
export function parsePieceLength(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const mult = m ? SIZE_UNITS[(m[2] ?? "").toLowerCase()] : undefined;
  if (!m || mult === undefined) throw new ProxyRequestError(`${H.pieceLength}: "${text}" is not a size (e.g. 4mib, 16MiB)`);
  const n = Math.round(Number(m[1]) * mult);
  if (n < MIN_PIECE_LENGTH || n > 64 * 1024 * 1024) throw new ProxyRequestError(`${H.pieceLength}: ${n} bytes is outside 4 MiB–64 MiB`);
  return n;
}

export interface DragonflyRequestOptions {
  tag?: string | undefined;
  application?: string | undefined;
  priority: number;
  filteredQueryParams: string[];
  useP2P: boolean;
  prefetch?: boolean | undefined;
  pieceLength?: number | undefined;
  contentForCalculatingTaskId?: string | undefined;
  enableTaskIdBasedBlobDigest?: boolean | undefined;
}

/** Reads the X-Dragonfly-* request headers; throws ProxyRequestError (400) on bad values. */
export function readDragonflyHeaders(headers: IncomingHttpHeaders, defaultFilters: readonly string[]): DragonflyRequestOptions {
  // Only the local socket may choose where content is written (DESIGN.md "Secure by default").
  if (headers[H.outputPath] !== undefined) throw new ProxyRequestError(`${H.outputPath} is refused on the network port: only the local socket (dfget) may choose output paths`, 403);
  const priorityText = single(headers, H.priority);
  let priority = 6;
  if (priorityText !== undefined) {
    if (!/^[0-6]$/.test(priorityText.trim())) throw new ProxyRequestError(`${H.priority}: expected an integer 0–6, got "${priorityText}"`);
    priority = Number(priorityText.trim());
  }
  const filters = single(headers, H.filteredQueryParams);
  const pieceLength = single(headers, H.pieceLength);
  return {
    tag: single(headers, H.tag),
    application: single(headers, H.application),
    priority,
    filteredQueryParams: filters !== undefined ? filters.split(",").map((s) => s.trim()).filter(Boolean) : [...defaultFilters],
    useP2P: bool(headers, H.useP2P) ?? false,
    prefetch: bool(headers, H.prefetch),
    pieceLength: pieceLength !== undefined ? parsePieceLength(pieceLength) : undefined,
    contentForCalculatingTaskId: single(headers, H.contentForCalculatingTaskId),
    enableTaskIdBasedBlobDigest: bool(headers, H.enableTaskIdBasedBlobDigest),
  };
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus those the proxy consumes itself. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade", "host"]);

/** Request headers to send upstream: no hop-by-hop, no X-Dragonfly-*, none named in Connection. */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const named = new Set(
    String(headers.connection ?? "")
      .split(",")
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || named.has(k) || k.startsWith("x-dragonfly-")) continue;
    out[k] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}

/** Response headers to pass back to the client: no hop-by-hop ones. */
export function downstreamResponseHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const named = new Set(
    String(headers.connection ?? "")
      .split(",")
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    const key = k.toLowerCase();
    if (v === undefined || HOP_BY_HOP.has(key) || named.has(key)) continue;
    out[k] = v;
  }
  return out;
}
