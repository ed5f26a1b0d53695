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
import { isObjectStorageScheme, needsAccessKey, needsEndpoint, OBJECT_STORAGE_SCHEMES, type ObjectStorageScheme } from "../../common/object-storage.js";
import type { ObjectStorage } from "../../gen/common/v2/common.js";
import { BackendError } from "./types.js";

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

/** Parses `scheme://bucket/key`; a URL without a bucket or key, or with userinfo or a query, is refused (400). */
export function parseObjectUrl(url: string): ObjectUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BackendError(`invalid URL: ${url}`, 400);
  }
  const scheme = u.protocol.replace(/:$/, "");
  if (!isObjectStorageScheme(scheme)) throw new BackendError(`${url}: not an object storage URL (${OBJECT_STORAGE_SCHEMES.join(", ")})`, 400);
  // Credentials in the URL would be logged and sent to the scheduler with it.
  if (u.username !== "" || u.password !== "") throw new BackendError(`${scheme}://${u.host}${u.pathname}: credentials do not belong in the URL; pass them as the download's object storage options (dfget --storage-access-key-id/--storage-access-key-secret)`, 400);
  if (u.search !== "") throw new BackendError(`${url}: an object storage URL has no query`, 400);
  const bucket = u.hostname;
  if (bucket === "") throw new BackendError(`${url}: no bucket: expected ${scheme}://<bucket>/<key>`, 400);
  let key: string;
  try {
    key = decodeURIComponent(u.pathname.replace(/^\//, ""));
  } catch {
    throw new BackendError(`${url}: the object key is not valid percent-encoding`, 400);
  }
  if (key === "") throw new BackendError(`${url}: no object key: expected ${scheme}://<bucket>/<key>`, 400);
  if (key.endsWith("/")) throw new BackendError(`${url}: names a directory; a single object is expected (directory downloads are not supported yet)`, 400);
  return { scheme, bucket, key };
}

/** The fields a store cannot work without, as Dragonfly's client checks them ("abs need endpoint"). */
export function checkObjectStorage(url: string, scheme: ObjectStorageScheme, os: ObjectStorage | undefined): void {
  const missing: string[] = [];
  if (needsEndpoint(scheme) && !os?.endpoint) missing.push("endpoint (--storage-endpoint)");
  if (scheme === "abs" && (!os?.accessKeyId || !os.accessKeySecret)) missing.push("account name and key (--storage-access-key-id, --storage-access-key-secret)");
  if (scheme !== "abs" && needsAccessKey(scheme) && (!os?.accessKeyId || !os.accessKeySecret)) missing.push("access key id and secret (--storage-access-key-id, --storage-access-key-secret)");
  if (os?.accessKeyId && !os.accessKeySecret) missing.push("access key secret (--storage-access-key-secret)");
  if (missing.length > 0) throw new BackendError(`${url}: ${scheme} needs ${missing.join(" and ")}`, 400);
  if (os?.endpoint) {
    let e: URL;
    try {
      e = new URL(os.endpoint);
    } catch {
      throw new BackendError(`${url}: invalid storage endpoint "${os.endpoint}": expected http(s)://host[:port]`, 400);
    }
    if (e.protocol !== "http:" && e.protocol !== "https:") throw new BackendError(`${url}: invalid storage endpoint "${e.protocol}//${e.host}": expected http(s)://host[:port]`, 400);
    if (e.username !== "" || e.password !== "") throw new BackendError(`${url}: the storage endpoint carries credentials; pass them as access key id and secret`, 400);
  }
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
