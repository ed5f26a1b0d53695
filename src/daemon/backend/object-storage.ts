// Object storage back-to-source (issue 23): s3://, gs://, abs:// (Azure Blob) and, through
// their S3-compatible APIs, oss:// (Aliyun), obs:// (Huawei) and cos:// (Tencent), with
// Dragonfly's URL forms and credential fields (object-url.ts).
//
// Why the official TypeScript SDKs (@aws-sdk/client-s3, @azure/storage-blob,
// @google-cloud/storage) and not Apache OpenDAL in the native core: they are each store's
// maintained signer and error model, they answer a ranged read with a Node stream that the
// piece pipeline already consumes (as https pieces are), and they need no new native export
// (the addon's surface is at its limit) nor a core rebuild. The S3 family's pieces on a plain-
// http endpoint (SeaweedFS, MinIO, a private gateway) skip the SDK's streams: `route` and
// `fetchPiece` hand the native origin client a GET presigned by the SDK's signer for each piece,
// which it fetches straight into the task's store (bytes never pass through JS). https
// endpoints (the native client has no TLS), keyless reads, GCS and Azure stay on the SDKs.
//
// Each download carries its own credentials, so the backend registered by scheme is a factory:
// `forDownload` binds it to the download's ObjectStorage (clients are cached per credentials).
// A task is one version of the object (pin.ts): its ETag (GCS: its generation) is fixed by the
// stat, sent as a precondition with every ranged read and compared with every answer, so an
// object replaced between pieces fails the task with OriginChangedError instead of mixing two
// versions. Errors name the URL, never a credential (secrets are scrubbed from SDK messages).
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import type { SsrfPolicy } from "../../common/ssrf.js";
import type { Download, ObjectStorage } from "../../gen/common/v2/common.js";
import { checkObjectStorage, OBJECT_STORAGE_SCHEMES, objectUrlOf, parseObjectDirectoryUrl, parseObjectUrl, scrub, secretsOf, type ObjectStorageScheme } from "./object-url.js";
import { discard, fetchPieceNatively, nativeToBackendError, resolveOriginAddr } from "./http.js";
import { originChanged, OriginChangedError, type OriginPin } from "./pin.js";
import { BackendError, isTemporaryStatus, type Backend, type BackendRequest, type ByteRange, type GetResult, type ListedEntry, type Listing, type OriginRoute, type StatResult } from "./types.js";
import { VERSION } from "../../common/version.js";
import { isNativeError, type NativePieceInfo, type NativeTaskStore } from "../../native/index.js";

/** What a store tells about an object. */
export interface ObjectInfo {
  size: number;
  /** The version validator: the object's strong ETag, quotes included (GCS: `"<generation>"`). */
  etag: string | undefined;
  lastModified: Date | undefined;
}

export interface ListedObject {
  key: string;
  size: number;
}

export interface ObjectRead {
  body: Readable;
  /** The version the answer is of, when the store says. */
  etag: string | undefined;
  /** The object's whole length, when the store says (Content-Range's total). */
  total: number | undefined;
}

/**
 * One store's client, bound to one set of credentials. Failures are BackendErrors whose message
 * is the reason alone (the backend prefixes the URL) with the store's HTTP status: 404 for a
 * missing bucket or object, 403 for refused credentials, 412 for a failed version precondition.
 */
export interface ObjectStore {
  /** The objects whose keys start with `prefix`, a page of at most `pageSize` at a time, the store's pagination followed to its end. */
  list(bucket: string, prefix: string, pageSize: number, signal: AbortSignal | undefined): AsyncIterable<ListedObject[]>;
  head(bucket: string, key: string, signal: AbortSignal | undefined): Promise<ObjectInfo>;
  read(bucket: string, key: string, range: ByteRange | undefined, version: string | undefined, signal: AbortSignal | undefined): Promise<ObjectRead>;
  /**
   * A GET of the object signed in its query, for the native origin client (plain http only);
   * undefined when this store's reads must go through its SDK (TLS, anonymous, no signer).
   */
  presignedGet?(bucket: string, key: string): Promise<PresignedGet | undefined>;
  close(): void;
}

/** A presigned GET: where to send it and its request target. The target is a secret (its signature). */
export interface PresignedGet {
  /** `http://host[:port]`, to resolve and check against the SSRF policy. */
  endpoint: URL;
  /** Host header value. */
  host: string;
  /** Path and query, the signature included: never logged, never in an error. */
  target: string;
}

export interface StoreContext {
  scheme: ObjectStorageScheme;
  options: ObjectStorage;
  /** The SSRF policy for connections a remote party chose the endpoint of (seed trigger). */
  ssrf: SsrfPolicy | undefined;
}

export type StoreFactory = (ctx: StoreContext) => Promise<ObjectStore>;

export interface ObjectStorageBackendOptions {
  ssrf?: SsrfPolicy | undefined;
  /** Objects asked for per listing request (the stores' own maximum, 1000, by default; tests page with fewer). */
  listPageSize?: number | undefined;
}

/** A directory of more objects than this is refused rather than held in memory and answered in one message. */
export const MAX_LISTED_OBJECTS = 100_000;

// Each scheme's client module, loaded on first use: the SDKs are large and most daemons never
// fetch from an object store.
const s3: StoreFactory = async (ctx) => (await import("./object-store-s3.js")).createS3Store(ctx);
const STORES: Record<ObjectStorageScheme, StoreFactory> = {
  s3,
  oss: s3,
  obs: s3,
  cos: s3,
  abs: async (ctx) => (await import("./object-store-azure.js")).createAzureStore(ctx),
  gs: async (ctx) => (await import("./object-store-gcs.js")).createGcsStore(ctx),
};

/** Clients kept per distinct credentials; the oldest is closed past this. */
const MAX_CLIENTS = 32;

export class ObjectStorageBackend implements Backend {
  readonly schemes = OBJECT_STORAGE_SCHEMES;
  private readonly clients = new Map<string, Promise<ObjectStore>>();

  constructor(private readonly options: ObjectStorageBackendOptions) {}

  /** This backend for one download: its object storage credentials travel with it. */
  forDownload(download: Download): Backend {
    return new BoundObjectStorage(this, download.objectStorage ?? {});
  }

  // Without a download's options (a caller that does not bind): anonymous/default credentials.
  stat(req: BackendRequest): Promise<StatResult> {
    return new BoundObjectStorage(this, {}).stat(req);
  }

  get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult> {
    return new BoundObjectStorage(this, {}).get(req);
  }

  /** The client for these credentials; the same credentials share one (keep-alive, token cache). */
  client(scheme: ObjectStorageScheme, options: ObjectStorage): Promise<ObjectStore> {
    const id = createHash("sha256").update(JSON.stringify([scheme, options])).digest("hex");
    let c = this.clients.get(id);
    if (c) {
      // Most recently used last: eviction takes the first.
      this.clients.delete(id);
      this.clients.set(id, c);
      return c;
    }
    c = STORES[scheme]({ scheme, options, ssrf: this.options.ssrf });
    // A client that failed to build (an unreadable credential file) is not kept.
    c.catch(() => this.clients.delete(id));
    this.clients.set(id, c);
    while (this.clients.size > MAX_CLIENTS) {
      const [oldest, store] = this.clients.entries().next().value as [string, Promise<ObjectStore>];
      this.clients.delete(oldest);
      void store.then((s) => s.close(), () => undefined);
    }
    return c;
  }

  get ssrf(): SsrfPolicy | undefined {
    return this.options.ssrf;
  }

  get listPageSize(): number {
    return this.options.listPageSize ?? 1000;
  }

  async close(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(all.map(async (c) => (await c.catch(() => undefined))?.close()));
  }
}

/** The backend bound to one download's ObjectStorage. */
class BoundObjectStorage implements Backend {
  readonly schemes = OBJECT_STORAGE_SCHEMES;
  private readonly secrets: string[];

  constructor(
    private readonly parent: ObjectStorageBackend,
    private readonly os: ObjectStorage,
  ) {
    this.secrets = secretsOf(os);
  }

  /** The store for `url`, after the URL's and the options' checks (400 for bad input). */
  private async store(url: string): Promise<{ store: ObjectStore; bucket: string; key: string }> {
    const { scheme, bucket, key } = parseObjectUrl(url);
    return { store: await this.client(url, scheme), bucket, key };
  }

  /** The client for the store of `url`, once the options pass their checks and the SSRF policy. */
  private async client(url: string, scheme: ObjectStorageScheme): Promise<ObjectStore> {
    checkObjectStorage(url, scheme, this.os);
    const ssrf = this.parent.ssrf;
    // Checked here, not only at connect: an SDK may reuse a pooled connection or skip lookup for IP literals.
    if (ssrf && this.os.endpoint) {
      try {
        await ssrf.checkUrl(this.os.endpoint);
      } catch (e) {
        throw new BackendError(`${url}: storage endpoint refused: ${(e as Error).message}`, 403);
      }
    }
    try {
      return await this.parent.client(scheme, this.os);
    } catch (e) {
      throw this.named(url, e);
    }
  }

  /**
   * The objects below a directory URL, each as its own URL. Keys ending in "/" are the stores'
   * directory markers (an empty directory made in a console): entries with is_dir set.
   */
  async list(req: BackendRequest): Promise<Listing> {
    const { scheme, bucket, prefix } = parseObjectDirectoryUrl(req.url);
    const store = await this.client(req.url, scheme);
    const out: ListedEntry[] = [];
    try {
      for await (const page of store.list(bucket, prefix, this.parent.listPageSize, req.signal)) {
        for (const o of page) {
          // The directory's own marker is the directory itself.
          if (o.key === prefix) continue;
          out.push({ url: objectUrlOf(scheme, bucket, o.key), contentLength: o.size, isDir: o.key.endsWith("/") });
        }
        if (out.length > MAX_LISTED_OBJECTS) throw new BackendError(`more than ${MAX_LISTED_OBJECTS} objects; list a narrower prefix`, 400);
      }
    } catch (e) {
      throw this.named(req.url, e);
    }
    return { entries: out };
  }

  /** A store's failure as the URL's: prefixed with it, secrets scrubbed, class and status kept. */
  private named(url: string, e: unknown, pin?: OriginPin): BackendError {
    if (e instanceof OriginChangedError) return e;
    const b = e instanceof BackendError ? e : new BackendError((e as Error).message ?? String(e), undefined, {}, true);
    const reason = scrub(b.message, this.secrets);
    if (pin && (b.statusCode === 412 || b.statusCode === 404)) {
      // The pinned version is gone: replaced (412 to the precondition) or deleted (404).
      return originChanged(url, `origin content changed: the task is pinned to ${pin.etag !== undefined ? `ETag ${pin.etag}` : "its first version"}, the store answers: ${reason}`, b.statusCode, b.headers);
    }
    return new BackendError(`${url}: ${reason}`, b.statusCode, b.headers, b.temporary);
  }

  async stat(req: BackendRequest): Promise<StatResult> {
    const { store, bucket, key } = await this.store(req.url);
    let info: ObjectInfo;
    try {
      info = await store.head(bucket, key, req.signal);
    } catch (e) {
      throw this.named(req.url, e);
    }
    return { contentLength: info.size, statusCode: 200, headers: headersOf(info), rangeSupported: true, url: req.url };
  }

  /**
   * The native fast path (the S3 family on a plain-http endpoint): pieces go from the store
   * straight into the task's native store, each a ranged GET presigned by the SDK's signer just
   * before it is sent, with the pin's If-Match, never through JS buffers. The endpoint's address
   * is resolved and checked against the SSRF policy here.
   */
  async route(url: string, requested: string): Promise<OriginRoute | undefined> {
    const { store, bucket, key } = await this.store(url);
    const signed = await this.presign(url, store, bucket, key);
    if (!signed) return undefined;
    return { addr: await resolveOriginAddr(signed.endpoint, requested, this.parent.ssrf), host: signed.host, path: signed.target, url: requested, headers: { "user-agent": `damselfly/${VERSION}` } };
  }

  async fetchPiece(route: OriginRoute, native: NativeTaskStore, number: number, signal?: AbortSignal): Promise<NativePieceInfo> {
    const { store, bucket, key } = await this.store(route.url);
    return fetchPieceNatively(route, native, number, signal, {
      maxRetries: 2,
      toError: (e) => this.nativeFailure(route, e, signal),
      // A fresh signature per request: a task may outlive any one presigned URL.
      path: async () => (await this.presign(route.url, store, bucket, key))?.target ?? route.path,
    });
  }

  private async presign(url: string, store: ObjectStore, bucket: string, key: string): Promise<PresignedGet | undefined> {
    try {
      return await store.presignedGet?.(bucket, key);
    } catch (e) {
      throw this.named(url, e);
    }
  }

  /** A native failure as the SDK path reports it: the store's status explained, the URL named, no signature. */
  private nativeFailure(route: OriginRoute, e: unknown, signal: AbortSignal | undefined): BackendError {
    const status = isNativeError(e) && e.code === "DF_BACKEND" ? e.statusCode : undefined;
    if (status === undefined) return nativeToBackendError(route.url, e, signal);
    let reason: BackendError;
    if (status === 404) reason = new BackendError("no such object", 404);
    else if (status === 403) reason = new BackendError("access denied (403): the store refused the credentials, or they may not read this object", 403);
    else reason = storeAnswered(status);
    return this.named(route.url, reason, route.pin);
  }

  async get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult> {
    const { store, bucket, key } = await this.store(req.url);
    const pin = req.pin;
    if (req.range && pin && req.range.start + req.range.length > pin.contentLength) throw new BackendError(`${req.url}: range ${req.range.start}+${req.range.length} is beyond its ${pin.contentLength} bytes`, 416);
    let r: ObjectRead;
    try {
      r = await store.read(bucket, key, req.range, pin?.etag, req.signal);
    } catch (e) {
      throw this.named(req.url, e, pin);
    }
    const why = pin && versionMismatch(pin, r);
    if (why) {
      discard(r.body);
      throw originChanged(req.url, why, 200, {});
    }
    const headers: Record<string, string> = {};
    if (r.etag !== undefined) headers.etag = r.etag;
    if (r.total !== undefined) headers["content-length"] = String(req.range ? req.range.length : r.total);
    return { statusCode: req.range ? 206 : 200, headers, body: r.body };
  }
}

function headersOf(info: ObjectInfo): Record<string, string> {
  const h: Record<string, string> = { "content-length": String(info.size) };
  if (info.etag !== undefined) h.etag = info.etag;
  if (info.lastModified !== undefined) h["last-modified"] = info.lastModified.toUTCString();
  return h;
}

/** Why an answer is not of the pinned version (another ETag or another length), or undefined. */
function versionMismatch(pin: OriginPin, r: ObjectRead): string | undefined {
  if (pin.etag !== undefined && r.etag !== undefined && r.etag !== pin.etag) return `origin content changed: the task is pinned to ETag ${pin.etag}, the store now answers ETag ${r.etag}`;
  if (r.total !== undefined && r.total !== pin.contentLength) return `origin content changed: it is now ${r.total} bytes long, the task is pinned to ${pin.contentLength}`;
  return undefined;
}

/**
 * A failure that is not a store's answer: the download was aborted, or the store was not
 * reached (connection refused, DNS, TLS, timeouts: it may come back).
 */
export function unreached(e: unknown): BackendError {
  if ((e as Error).name === "AbortError") return new BackendError("aborted", undefined, {}, false);
  return new BackendError(`cannot reach the store: ${(e as Error).message}`, undefined, {}, true);
}

/**
 * A store's answer the store's own mapping did not explain: a failed version precondition
 * (412, which the backend reports as the origin having changed), or the status and the store's
 * error code; temporary as an http origin's (unknown status: the store may come back).
 */
export function storeAnswered(status: number | undefined, code = ""): BackendError {
  if (status === 412) return new BackendError("412 Precondition Failed", 412);
  return new BackendError(`the store answered ${status ?? "?"} ${code}`.trimEnd(), status, {}, status === undefined || isTemporaryStatus(status));
}

/** The total length in a Content-Range (`bytes 0-9/100`), if any. */
export function totalOfContentRange(contentRange: string | undefined): number | undefined {
  const m = /\/(\d+)\s*$/.exec(contentRange ?? "");
  return m?.[1] !== undefined ? Number(m[1]) : undefined;
}

/** A strong ETag, quoted (stores differ in whether they quote it); a weak one cannot pin. */
export function strongEtag(etag: string | undefined): string | undefined {
  if (!etag) return undefined;
  if (etag.startsWith("W/")) return undefined;
  return etag.startsWith('"') ? etag : `"${etag}"`;
}
