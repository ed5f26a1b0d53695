// The Google Cloud Storage client of object-storage.ts (@google-cloud/storage), for gs:// URLs.
// Credentials: a service account's JSON key file on the daemon's host (credential_path, as in
// Dragonfly's client), or the host's application default credentials. A GCS object's version
// is its generation: the task is pinned to it (reported as the strong ETag `"<generation>"`),
// and every ranged read asks for that generation, so a replaced object reads as gone (404),
// which object-storage.ts reports as the origin having changed, never as another version.
import { readFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { ApiError, Storage, type File } from "@google-cloud/storage";
import { storeAnswered, totalOfContentRange, type ListedObject, type ObjectInfo, type ObjectRead, type ObjectStore, type StoreContext } from "./object-storage.js";
import { BackendError, type ByteRange } from "./types.js";

export async function createGcsStore(ctx: StoreContext): Promise<ObjectStore> {
  const os = ctx.options;
  if (os.insecureSkipVerify === true && (os.endpoint ?? "https:").startsWith("https:")) {
    // The SDK's transport offers no switch for it; refusing beats silently verifying anyway.
    throw new BackendError("insecure skip verify is not supported for gs:// yet; use an http endpoint or a certificate the host trusts", 400);
  }
  if (os.credentialPath) await checkCredentialFile(os.credentialPath);
  const storage = new Storage({
    ...(os.endpoint ? { apiEndpoint: os.endpoint.replace(/\/+$/, ""), useAuthWithCustomEndpoint: os.credentialPath !== undefined && os.credentialPath !== "" } : {}),
    ...(os.credentialPath ? { keyFilename: os.credentialPath } : {}),
    // The piece pipeline retries pieces itself (and goes to peers).
    retryOptions: { maxRetries: 1 },
  });
  return new GcsStore(storage);
}

/** A credential file that cannot be used fails here, naming the file, not its content. */
async function checkCredentialFile(path: string): Promise<void> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new BackendError(`cannot read the credential file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 400);
  }
  let type: unknown;
  try {
    type = (JSON.parse(text) as { type?: unknown }).type;
  } catch {
    throw new BackendError(`the credential file ${path} is not JSON (a service account key or authorized user file is expected)`, 400);
  }
  if (typeof type !== "string") throw new BackendError(`the credential file ${path} has no "type" (a service account key or authorized user file is expected)`, 400);
}

function generationEtag(generation: string | number | undefined): string | undefined {
  return generation === undefined || generation === "" ? undefined : `"${generation}"`;
}

class GcsStore implements ObjectStore {
  constructor(private readonly storage: Storage) {}

  async *list(bucket: string, prefix: string, pageSize: number, signal: AbortSignal | undefined): AsyncIterable<ListedObject[]> {
    let pageToken: string | undefined;
    do {
      signal?.throwIfAborted();
      let files: File[];
      let next: { pageToken?: string } | null | undefined;
      try {
        [files, next] = await this.storage.bucket(bucket).getFiles({ autoPaginate: false, maxResults: pageSize, ...(prefix ? { prefix } : {}), ...(pageToken ? { pageToken } : {}) });
      } catch (e) {
        throw await this.failure(e, bucket);
      }
      yield files.map((f) => ({ key: f.name, size: Number(f.metadata.size ?? 0) }));
      pageToken = next?.pageToken;
    } while (pageToken);
  }

  async head(bucket: string, key: string, signal: AbortSignal | undefined): Promise<ObjectInfo> {
    signal?.throwIfAborted();
    try {
      const [m] = await this.storage.bucket(bucket).file(key).getMetadata();
      if (m.size === undefined) throw new BackendError("the store did not tell the object's length", 502);
      return { size: Number(m.size), etag: generationEtag(m.generation), lastModified: m.updated ? new Date(m.updated) : undefined };
    } catch (e) {
      throw await this.failure(e, bucket);
    }
  }

  async read(bucket: string, key: string, range: ByteRange | undefined, version: string | undefined, signal: AbortSignal | undefined): Promise<ObjectRead> {
    const generation = version?.replace(/^"|"$/g, "");
    const file = this.storage.bucket(bucket).file(key, generation ? { generation: Number(generation) } : {});
    // No per-request checksum: a ranged read has none to check, and the task's digest covers the whole.
    const body = file.createReadStream({ validation: false, decompress: false, ...(range ? { start: range.start, end: range.start + range.length - 1 } : {}) });
    const onAbort = () => body.destroy(new BackendError("aborted", undefined));
    signal?.addEventListener("abort", onAbort, { once: true });
    body.once("close", () => signal?.removeEventListener("abort", onAbort));
    try {
      // The request starts on the first read; the answer's status is known before any byte is taken.
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        body.once("error", reject);
        body.once("response", (r: IncomingMessage) => {
          if ((r.statusCode ?? 0) < 400) {
            body.off("error", reject);
            resolve(r);
          }
          // Otherwise the SDK destroys the stream with the ApiError: `reject` gets it.
        });
        body.read(0);
      });
      const total = totalOfContentRange(res.headers["content-range"]);
      const length = res.headers["content-length"];
      return {
        body,
        etag: generationEtag(res.headers["x-goog-generation"] as string | undefined),
        total: total ?? (!range && length !== undefined ? Number(length) : undefined),
      };
    } catch (e) {
      body.destroy();
      throw await this.failure(e, bucket);
    }
  }

  /** The SDK's error as the reason a user can act on; a 404 asks whether the bucket exists. */
  private async failure(e: unknown, bucket: string): Promise<BackendError> {
    if (e instanceof BackendError) return e;
    const status = e instanceof ApiError ? e.code : undefined;
    if (status === undefined || typeof status !== "number") {
      return new BackendError(`cannot reach the store: ${(e as Error).message}`, undefined, {}, true);
    }
    if (status === 404) {
      const exists = await this.storage.bucket(bucket).exists().then(([x]) => x, () => true);
      return exists ? new BackendError("no such object", 404) : new BackendError(`bucket "${bucket}" does not exist`, 404);
    }
    if (status === 401 || status === 403) return new BackendError(`access denied (${status}): the store refused the credentials, or they may not read this object`, status);
    return storeAnswered(status);
  }

  close(): void {
    // Connections close with the process' idle keep-alive; nothing to release.
  }
}
