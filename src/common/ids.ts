// Identifiers exactly as Dragonfly computes them, so that our peers, Dragonfly's peers and the
// manager's preheat agree on which task a URL is. Host and peer ids are "{ip}-{hostname}[-…]".
import { createHash, randomUUID } from "node:crypto";

export const SEED_SUFFIX = "seed";

/**
 * Query keys Dragonfly drops from URLs before computing task ids: URL-signing parameters of
 * S3, GCS, OSS, OBS and COS, which change per request without changing the content, and the
 * registry mirror's `ns`.
 */
export const DEFAULT_FILTERED_QUERY_PARAMS: readonly string[] = [
  "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-User-Agent",
  "X-Goog-Algorithm", "X-Goog-Credential", "X-Goog-Date", "X-Goog-Expires", "X-Goog-SignedHeaders", "X-Goog-Signature",
  "OSSAccessKeyId", "Expires", "Signature", "SecurityToken",
  "AccessKeyId", "X-Obs-Date", "X-Obs-Security-Token",
  "q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time", "q-header-list", "q-url-param-list", "q-signature", "x-cos-security-token",
  "ns",
];

export function hostId(ip: string, hostname: string, isSeedPeer: boolean): string {
  return isSeedPeer ? `${ip}-${hostname}-${SEED_SUFFIX}` : `${ip}-${hostname}`;
}

export function peerId(ip: string, hostname: string, isSeedPeer: boolean): string {
  return isSeedPeer ? `${ip}-${hostname}-${randomUUID()}-${SEED_SUFFIX}` : `${ip}-${hostname}-${randomUUID()}`;
}

/** Go's url.QueryEscape: unreserved bytes stay, space becomes '+', the rest %XX (upper hex). */
function queryEscape(s: string): string {
  let out = "";
  for (const byte of Buffer.from(s, "utf8")) {
    const c = String.fromCharCode(byte);
    if (/[-.0-9A-Z_a-z~]/.test(c)) out += c;
    else if (byte === 0x20) out += "+";
    else out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * Canonical URL for task ids: drops the filtered query keys and sorts the remaining pairs by
 * key (values of one key keep their order). With no filter the URL is used verbatim, as
 * Dragonfly does. Throws on a URL that does not parse.
 */
export function filterQueryParams(url: string, filtered: readonly string[]): string {
  if (filtered.length === 0) return url;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`invalid URL: ${url}`);
  }
  const pairs: Array<[string, string]> = [];
  for (const segment of u.search.replace(/^\?/, "").split("&")) {
    // Segments with ';' are dropped, as Go's url.ParseQuery rejects them.
    if (segment === "" || segment.includes(";")) continue;
    for (const [k, v] of new URLSearchParams(segment)) if (!filtered.includes(k)) pairs.push([k, v]);
  }
  // Byte order of the UTF-8 keys (Rust's String ordering); Array.prototype.sort is stable.
  pairs.sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  u.search = pairs.length === 0 ? "" : `?${pairs.map(([k, v]) => `${queryEscape(k)}=${queryEscape(v)}`).join("&")}`;
  const out = u.href;
  return u.pathname === "/" && out.endsWith("/") ? out.replace(/\/+$/, "") : out;
}

export interface UrlTaskIdParams {
  url: string;
  tag?: string | undefined;
  application?: string | undefined;
  /** Hugging Face / ModelScope / OpenCSG revision. */
  revision?: string | undefined;
  pieceLength?: number | undefined;
  filteredQueryParams?: readonly string[] | undefined;
}

/** Standard task id: sha256(url' ‖ tag ‖ application ‖ revision ‖ piece_length ‖ "STANDARD"). */
export function taskIdFromUrl(p: UrlTaskIdParams): string {
  const h = createHash("sha256").update(filterQueryParams(p.url, p.filteredQueryParams ?? []));
  // Dragonfly skips absent fields; an empty string is "present" only if set explicitly.
  if (p.tag !== undefined) h.update(p.tag);
  if (p.application !== undefined) h.update(p.application);
  if (p.revision !== undefined) h.update(p.revision);
  if (p.pieceLength !== undefined) h.update(String(p.pieceLength));
  return h.update("STANDARD").digest("hex");
}

/** Task id from explicit content (`content_for_calculating_task_id`). */
export function taskIdFromContent(content: string): string {
  return createHash("sha256").update(content).digest("hex");
}

const BLOB_RE = /\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})(?:$|[?#])/;
const MANIFEST_RE = /\/v2\/.+\/manifests\/(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})(?:$|[?#])/;

/** The OCI digest in a registry blob URL (`…/v2/<repo>/blobs/sha256:<hex>`), or undefined. */
export function blobDigestFromUrl(url: string): string | undefined {
  return BLOB_RE.exec(url)?.[1];
}

export function manifestDigestFromUrl(url: string): string | undefined {
  return MANIFEST_RE.exec(url)?.[1];
}

/** Task id of a blob URL when `enableTaskIDBasedBlobDigest` is on: the digest's hex. */
export function taskIdFromBlobUrl(url: string): string {
  const d = blobDigestFromUrl(url);
  if (!d) throw new TypeError(`not an OCI blob URL with a sha256/sha512 digest: ${url}`);
  return d.slice(d.indexOf(":") + 1);
}

/** A task id as Dragonfly produces it: 64 (sha256) or 128 (sha512 blob) lowercase hex chars. */
export function isTaskId(s: string): boolean {
  return /^(?:[0-9a-f]{64}|[0-9a-f]{128})$/.test(s);
}
