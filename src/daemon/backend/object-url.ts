// Object storage URLs and their credentials (issue 23), in Dragonfly's forms: the bucket
// (Azure: the container) is the URL's host, the object key its path, percent-decoded:
//
//   s3://<bucket>/<key>    gs://<bucket>/<key>    abs://<container>/<key>
//   oss://<bucket>/<key>   obs://<bucket>/<key>   cos://<bucket>/<key>
//
// Credentials come with the download (`Download.object_storage`, dfget's --storage-* flags),
// never in the URL: a URL is logged, reported to the scheduler and part of the task id. Which
// fields each store needs follows Dragonfly's client (dragonfly-client-backend object_storage):
// abs, oss, obs and cos need an endpoint; s3 defaults its region to us-east-1.
import { directoryUrlRules, endpointRule, isObjectStorageScheme, needsAccessKey, needsEndpoint, OBJECT_STORAGE_SCHEMES, objectUrlRules, type DirectoryUrlWrong, type ObjectStorageScheme, type ObjectUrlWrong } from "../../common/object-storage.js";
import type { ObjectStorage } from "../../gen/common/v2/common.js";
import { BackendError, parseBackendUrl } from "./types.js";

export { isObjectStorageScheme, OBJECT_STORAGE_SCHEMES, type ObjectStorageScheme };

/** Dragonfly's default S3 region when none is given. */
export const DEFAULT_S3_REGION = "us-east-1";

export interface ObjectUrl {
  scheme: ObjectStorageScheme;
  /** Bucket, or Azure Blob's container. */
  bucket: string;
  /** Object key, percent-decoded, without the leading slash. */
  key: string;
}

/** How the daemon words each broken rule of an object or directory URL (dfget's flags name where credentials go). */
const URL_WRONG: Record<ObjectUrlWrong | DirectoryUrlWrong, (u: URL, url: string, scheme: ObjectStorageScheme) => string> = {
  credentials: (u, _url, scheme) => `${scheme}://${u.host}${u.pathname}: credentials do not belong in the URL; pass them as the download's object storage options (dfget --storage-access-key-id/--storage-access-key-secret)`,
  query: (_u, url) => `${url}: an object storage URL has no query`,
  "no-bucket": (_u, url, scheme) => `${url}: no bucket: expected ${scheme}://<bucket>/<key>`,
  "key-encoding": (_u, url) => `${url}: the object key is not valid percent-encoding`,
  "no-key": (_u, url, scheme) => `${url}: no object key: expected ${scheme}://<bucket>/<key>`,
  directory: (_u, url) => `${url}: names a directory; a single object is expected (download a directory with dfget --recursive)`,
  "not-directory": (_u, url) => `${url}: names an object; a directory ends with "/"`,
};

/** The URL and its object storage scheme; anything else is refused (400). */
function objectStorageUrl(url: string): { u: URL; scheme: ObjectStorageScheme } {
  const u = parseBackendUrl(url);
  const scheme = u.protocol.replace(/:$/, "");
  if (!isObjectStorageScheme(scheme)) throw new BackendError(`${url}: not an object storage URL (${OBJECT_STORAGE_SCHEMES.join(", ")})`, 400);
  return { u, scheme };
}

/** Parses `scheme://bucket/key`; a URL that breaks a rule of common/object-storage.ts is refused (400). */
export function parseObjectUrl(url: string): ObjectUrl {
  const { u, scheme } = objectStorageUrl(url);
  const checked = objectUrlRules(u);
  if (!checked.ok) throw new BackendError(URL_WRONG[checked.wrong](u, url, scheme), 400);
  return { scheme, ...checked.value };
}

/** Parses a directory URL, `scheme://bucket/` or `scheme://bucket/prefix/` (ListTaskEntries). */
export function parseObjectDirectoryUrl(url: string): { scheme: ObjectStorageScheme; bucket: string; prefix: string } {
  const { u, scheme } = objectStorageUrl(url);
  const checked = directoryUrlRules(u);
  if (!checked.ok) throw new BackendError(URL_WRONG[checked.wrong](u, url, scheme), 400);
  return { scheme, ...checked.value };
}

/**
 * The URL of an object, each segment of its key percent-encoded. Built as text, never through
 * `new URL`, which would resolve `.` and `..` segments into another key: a listing hands such a
 * key on as it is, and dfget refuses it by name (it would land outside the output directory).
 */
export function objectUrlOf(scheme: ObjectStorageScheme, bucket: string, key: string): string {
  return `${scheme}://${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

/** The fields a store cannot work without, as Dragonfly's client checks them ("abs need endpoint"). */
export function checkObjectStorage(url: string, scheme: ObjectStorageScheme, os: ObjectStorage | undefined): void {
  const missing: string[] = [];
  if (needsEndpoint(scheme) && !os?.endpoint) missing.push("endpoint (--storage-endpoint)");
  if (scheme === "abs" && (!os?.accessKeyId || !os.accessKeySecret)) missing.push("account name and key (--storage-access-key-id, --storage-access-key-secret)");
  if (scheme !== "abs" && needsAccessKey(scheme) && (!os?.accessKeyId || !os.accessKeySecret)) missing.push("access key id and secret (--storage-access-key-id, --storage-access-key-secret)");
  if (os?.accessKeyId && !os.accessKeySecret) missing.push("access key secret (--storage-access-key-secret)");
  if (missing.length > 0) throw new BackendError(`${url}: ${scheme} needs ${missing.join(" and ")}`, 400);
  if (!os?.endpoint) return;
  const endpoint = endpointRule(os.endpoint);
  if (endpoint.ok) return;
  const expected = "expected http(s)://host[:port]";
  if (endpoint.wrong === "not-a-url") throw new BackendError(`${url}: invalid storage endpoint "${os.endpoint}": ${expected}`, 400);
  if (endpoint.wrong === "not-http") throw new BackendError(`${url}: invalid storage endpoint "${endpoint.parsed.protocol}//${endpoint.parsed.host}": ${expected}`, 400);
  throw new BackendError(`${url}: the storage endpoint carries credentials; pass them as access key id and secret`, 400);
}

/** The secrets of an ObjectStorage, for scrubbing them from any text a store's SDK produced. */
export function secretsOf(os: ObjectStorage | undefined): string[] {
  return [os?.accessKeySecret, os?.sessionToken, os?.securityToken].filter((s): s is string => s !== undefined && s.length >= 4);
}

/** `text` with every secret replaced: SDK messages may quote a request (e.g. a signature's inputs). */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join("[redacted]");
  return out;
}
