// The S3 client of object-storage.ts (AWS SDK v3), for s3:// and for the S3-compatible APIs of
// Aliyun OSS, Huawei OBS and Tencent COS (oss://, obs://, cos://), which accept SigV4 with the
// same access key pair (OSS's STS security token rides as the S3 session token).
//
// Addressing follows OpenDAL's, as Dragonfly's client uses it: s3:// with a custom endpoint is
// path-style (SeaweedFS, MinIO, Ceph), AWS itself virtual-hosted; OSS, OBS and COS serve their
// S3 APIs virtual-hosted only, except on an endpoint that is an IP address or localhost, which
// cannot carry the bucket in its name.
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { isIP } from "node:net";
import type { Readable } from "node:stream";
import { SignatureV4 } from "@smithy/signature-v4";
import { GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, S3ServiceException, type ListObjectsV2CommandOutput } from "@aws-sdk/client-s3";
import { DEFAULT_S3_REGION } from "./object-url.js";
import { storeAnswered, strongEtag, type PresignedGet, totalOfContentRange, unreached, type ListedObject, type ObjectInfo, type ObjectRead, type ObjectStore, type StoreContext } from "./object-storage.js";
import { BackendError, type ByteRange } from "./types.js";

/** Connections per client: a seed fetches many pieces of many tasks at once. */
const MAX_SOCKETS = 256;

function pathStyle(ctx: StoreContext): boolean {
  const endpoint = ctx.options.endpoint;
  if (!endpoint) return false;
  if (ctx.scheme === "s3") return true;
  const host = new URL(endpoint).hostname.replace(/^\[|\]$/g, "");
  return isIP(host) !== 0 || host === "localhost";
}

export function createS3Store(ctx: StoreContext): Promise<ObjectStore> {
  // The SDK warns once that its releases after January 2027 need Node 22; the version pinned in
  // package.json runs on Node 20, and the warning would be printed into dfget's output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const os = ctx.options;
  // insecure_skip_verify: the store's certificate is not checked (a private store's self-signed one).
  const agentOptions = { keepAlive: true, maxSockets: MAX_SOCKETS, ...(ctx.ssrf ? { lookup: ctx.ssrf.lookup } : {}) };
  const client = new S3Client({
    region: os.region || DEFAULT_S3_REGION,
    ...(os.endpoint ? { endpoint: os.endpoint } : {}),
    forcePathStyle: pathStyle(ctx),
    ...(os.accessKeyId && os.accessKeySecret ? { credentials: { accessKeyId: os.accessKeyId, secretAccessKey: os.accessKeySecret, ...(os.sessionToken || os.securityToken ? { sessionToken: os.sessionToken || os.securityToken } : {}) } } : {}),
    // Ranged reads carry no whole-object checksum to validate; the task's digest covers the bytes.
    responseChecksumValidation: "WHEN_REQUIRED",
    requestChecksumCalculation: "WHEN_REQUIRED",
    // The piece pipeline retries pieces itself (and goes to peers); one SDK retry for a dropped connection.
    maxAttempts: 2,
    requestHandler: {
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent({ ...agentOptions, rejectUnauthorized: os.insecureSkipVerify !== true }),
      connectionTimeout: 10_000,
      requestTimeout: 120_000,
    },
  });
  // Only the download's own keys sign native reads: the SDK's default chain (environment,
  // profiles, instance metadata) stays the SDK's to walk, on its own path.
  const keyed = Boolean(os.accessKeyId && os.accessKeySecret);
  return Promise.resolve(new S3Store(client, os.endpoint && keyed ? new URL(os.endpoint) : undefined, pathStyle(ctx)));
}

/** How long a presigned piece request stays valid: it is sent at once, retries sign anew. */
const PRESIGNED_SECONDS = 900;

/** A key's path segments as S3 encodes them (RFC 3986 unreserved kept, "/" between segments). */
function encodeKey(key: string): string {
  return key
    .split("/")
    .map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join("/");
}

class S3Store implements ObjectStore {
  private signer: Promise<SignatureV4> | undefined;

  constructor(
    private readonly client: S3Client,
    /** The custom endpoint (SeaweedFS, MinIO, an S3-compatible API) when the download carries keys; undefined: SDK reads only. */
    private readonly endpoint: URL | undefined,
    private readonly pathStyle: boolean,
  ) {}

  /**
   * A GET of the object presigned with SigV4 (the SDK's signer, the client's credentials and
   * region), for the native origin client: only for a plain-http custom endpoint (the native
   * client speaks no TLS) and signed credentials (anonymous reads stay with the SDK).
   */
  async presignedGet(bucket: string, key: string): Promise<PresignedGet | undefined> {
    const ep = this.endpoint;
    if (!ep || ep.protocol !== "http:") return undefined;
    const signer = await (this.signer ??= this.makeSigner());
    const base = ep.pathname.replace(/\/+$/, "");
    const path = this.pathStyle ? `${base}/${encodeKey(bucket)}/${encodeKey(key)}` : `${base}/${encodeKey(key)}`;
    const hostname = this.pathStyle ? ep.hostname : `${bucket}.${ep.hostname}`;
    const port = ep.port ? Number(ep.port) : undefined;
    const host = port !== undefined ? `${hostname}:${port}` : hostname;
    const signed = await signer.presign(
      // S3's query-signed requests sign no payload; the piece's Range and If-Match ride unsigned.
      { method: "GET", protocol: "http:", hostname, ...(port !== undefined ? { port } : {}), path, query: {}, headers: { host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" } },
      { expiresIn: PRESIGNED_SECONDS },
    );
    const query = Object.entries(signed.query ?? {})
      .flatMap(([k, v]) => (v === null ? [] : (Array.isArray(v) ? v : [v]).map((x) => `${encodeURIComponent(k)}=${encodeURIComponent(x)}`)))
      .join("&");
    return { endpoint: new URL(`http://${host}`), host, target: `${path}?${query}` };
  }

  /** The SDK's SigV4 signer over the client's credentials and region. */
  private async makeSigner(): Promise<SignatureV4> {
    const config = this.client.config;
    return new SignatureV4({ credentials: config.credentials, region: await config.region(), service: "s3", sha256: config.sha256, uriEscapePath: false, applyChecksum: false });
  }

  async *list(bucket: string, prefix: string, pageSize: number, signal: AbortSignal | undefined): AsyncIterable<ListedObject[]> {
    let token: string | undefined;
    do {
      let r: ListObjectsV2CommandOutput;
      try {
        r = await this.client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: pageSize, ...(prefix ? { Prefix: prefix } : {}), ...(token ? { ContinuationToken: token } : {}) }), { abortSignal: signal });
      } catch (e) {
        throw await this.failure(e, bucket, signal);
      }
      yield (r.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [{ key: o.Key, size: o.Size ?? 0 }]));
      token = r.IsTruncated === true ? r.NextContinuationToken : undefined;
    } while (token);
  }

  async head(bucket: string, key: string, signal: AbortSignal | undefined): Promise<ObjectInfo> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal });
      if (r.ContentLength === undefined) throw new BackendError("the store did not tell the object's length", 502);
      return { size: r.ContentLength, etag: strongEtag(r.ETag), lastModified: r.LastModified };
    } catch (e) {
      throw await this.failure(e, bucket, signal);
    }
  }

  async read(bucket: string, key: string, range: ByteRange | undefined, version: string | undefined, signal: AbortSignal | undefined): Promise<ObjectRead> {
    try {
      const r = await this.client.send(
        new GetObjectCommand({
          Bucket: bucket,
          Key: key,
          ...(range ? { Range: `bytes=${range.start}-${range.start + range.length - 1}` } : {}),
          ...(version !== undefined ? { IfMatch: version } : {}),
        }),
        { abortSignal: signal },
      );
      if (!r.Body) throw new BackendError("the store answered without a body", 502);
      return { body: r.Body as Readable, etag: strongEtag(r.ETag), total: range ? totalOfContentRange(r.ContentRange) : r.ContentLength };
    } catch (e) {
      throw await this.failure(e, bucket, signal);
    }
  }

  /**
   * The SDK's error as the reason a user can act on. A HEAD's 404 has no body to say whether the
   * bucket or the object is missing, so the bucket is asked about.
   */
  private async failure(e: unknown, bucket: string, signal: AbortSignal | undefined): Promise<BackendError> {
    if (e instanceof BackendError) return e;
    if (!(e instanceof S3ServiceException)) return unreached(e);
    const status = e.$metadata.httpStatusCode;
    // A HEAD's error has no body: the SDK names it "Unknown" or after the status ("NotFound").
    const code = e.name === "Unknown" ? "" : e.name;
    if (status === 404) {
      if (code === "NoSuchBucket" || (code !== "NoSuchKey" && !(await this.bucketExists(bucket, signal)))) return new BackendError(`bucket "${bucket}" does not exist`, 404);
      return new BackendError("no such object", 404);
    }
    if (code === "ExpiredToken" || code === "TokenRefreshRequired") return new BackendError(`the session token has expired (${status ?? "?"} ${code})`, 403);
    if (status === 403) return new BackendError(`access denied (403${code ? ` ${code}` : ""}): the store refused the credentials, or they may not read this object`, 403);
    if (status === 301 || code === "PermanentRedirect" || code === "AuthorizationHeaderMalformed") return new BackendError(`the bucket is in another region (${code}); pass its region (--storage-region)`, 400);
    return storeAnswered(status, code);
  }

  private async bucketExists(bucket: string, signal: AbortSignal | undefined): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal: signal });
      return true;
    } catch (e) {
      return !(e instanceof S3ServiceException && e.$metadata.httpStatusCode === 404);
    }
  }

  close(): void {
    this.client.destroy();
  }
}
