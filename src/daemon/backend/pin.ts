// Content pinning (#20): a task is one version of the origin's content. The first answer a
// task gets fixes the version (its validators); every later request to the origin carries that
// version as a precondition, and every answer's validators are compared with it, so a task
// assembled from many ranged GETs (and from peers that made their own) never mixes the bytes
// of two versions. A mismatch is an OriginChangedError, never a silent success.
//
// - A strong ETag pins best: sent as If-Match, which an origin evaluates byte for byte.
// - Without one, Last-Modified pins (sent as If-Unmodified-Since): weaker, since two versions
//   written within the same second look alike; the content length is compared too.
// - A weak ETag (W/"…") cannot pin: If-Match compares strongly (a weak tag always fails it),
//   and a weak tag allows other bytes for the same tag (another encoding).
// - An origin with neither cannot be pinned across requests at all: such tasks are fetched in
//   one response (see TaskManager.backToSource).
import { BackendError } from "./types.js";

export interface OriginPin {
  /** Strong ETag, quotes included, as the origin wrote it. */
  etag?: string | undefined;
  /** Last-Modified, as the origin wrote it. */
  lastModified?: string | undefined;
  /** The content's length: an answer of another length is another version too. */
  contentLength: number;
}

/** The pin a first answer gives (response headers with lower-cased names). */
export function pinFromHeaders(headers: Record<string, string>, contentLength: number): OriginPin {
  const etag = headers.etag?.trim();
  const lastModified = headers["last-modified"]?.trim();
  return {
    etag: etag && isStrongEtag(etag) ? etag : undefined,
    lastModified: lastModified || undefined,
    contentLength,
  };
}

export function isStrongEtag(etag: string): boolean {
  return /^"[^"]*"$/.test(etag);
}

/** Whether the pin holds a validator an origin can check; otherwise only one response can be trusted. */
export function hasValidator(pin: OriginPin): boolean {
  return pin.etag !== undefined || pin.lastModified !== undefined;
}

/** Precondition headers that make an origin refuse (412) anything but the pinned version. */
export function preconditionHeaders(pin: OriginPin | undefined): Record<string, string> {
  if (pin?.etag !== undefined) return { "if-match": pin.etag };
  if (pin?.lastModified !== undefined) return { "if-unmodified-since": pin.lastModified };
  return {};
}

/** Request header names the pin owns: a caller's own would fight it. */
export const PRECONDITION_HEADERS = new Set(["if-match", "if-unmodified-since", "if-range"]);

/** The pin as a phrase: `ETag "a"`, `Last-Modified …`, or the length alone. */
export function describePin(pin: OriginPin): string {
  if (pin.etag !== undefined) return `ETag ${pin.etag}`;
  if (pin.lastModified !== undefined) return `Last-Modified ${pin.lastModified}`;
  return `${pin.contentLength} bytes without ETag or Last-Modified`;
}

/** The total length an answer tells: Content-Range's total for a 206, Content-Length for a whole 200. */
export function totalLength(status: number, headers: Record<string, string>, whole: boolean): number | undefined {
  if (status === 206) {
    const m = /\/(\d+)\s*$/.exec(headers["content-range"] ?? "");
    return m?.[1] !== undefined ? Number(m[1]) : undefined;
  }
  if (status === 200 && whole && headers["content-length"] !== undefined) {
    const n = Number(headers["content-length"]);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  return undefined;
}

/**
 * Why an answer is not of the pinned version, or undefined when it is: 412 (the precondition
 * failed), a validator both the pin and the answer carry that differs, or another total
 * length. A validator the answer leaves out proves nothing; the precondition vouches then.
 * The native origin client (native/core/src/origin.rs `Pin`) applies the same rules.
 */
export function mismatch(pin: OriginPin, status: number, headers: Record<string, string>, total: number | undefined): string | undefined {
  if (status === 412) {
    const now = headers.etag !== undefined ? `; it now has ETag ${headers.etag.trim()}` : headers["last-modified"] !== undefined ? `; it now has Last-Modified ${headers["last-modified"].trim()}` : "";
    const sent = pin.etag !== undefined ? `If-Match ${pin.etag}` : `If-Unmodified-Since ${pin.lastModified ?? "?"}`;
    return `origin content changed: it answered 412 Precondition Failed to ${sent}${now}`;
  }
  const checks: Array<[string, string | undefined, string | undefined]> = [
    ["ETag", pin.etag, headers.etag],
    ["Last-Modified", pin.lastModified, headers["last-modified"]],
  ];
  for (const [label, want, got] of checks) {
    if (want !== undefined && got !== undefined && got.trim() !== want) return `origin content changed: the task is pinned to ${label} ${want}, the origin now answers ${label} ${got.trim()}`;
  }
  if (total !== undefined && total !== pin.contentLength) return `origin content changed: it is now ${total} bytes long, the task is pinned to ${pin.contentLength}`;
  return undefined;
}

/** How two pins relate: the same version, different ones, or no validator in common to tell. */
export function comparePins(a: OriginPin, b: OriginPin): "same" | "different" | "unknown" {
  if (a.contentLength !== b.contentLength) return "different";
  let compared = false;
  for (const [x, y] of [
    [a.etag, b.etag],
    [a.lastModified, b.lastModified],
  ] as const) {
    if (x === undefined || y === undefined) continue;
    if (x !== y) return "different";
    compared = true;
  }
  return compared ? "same" : "unknown";
}

/**
 * The origin no longer serves the version the task is pinned to. Not temporary: asking again
 * gets the same other version. The task fails (or restarts once, download.restartOnOriginChange).
 */
export class OriginChangedError extends BackendError {
  override name = "OriginChangedError";
}

/** The OriginChangedError for an answer that `mismatch` refused. */
export function originChanged(url: string, reason: string, status: number | undefined, headers: Record<string, string>): OriginChangedError {
  return new OriginChangedError(`${url}: ${reason}`, status, headers, false);
}
