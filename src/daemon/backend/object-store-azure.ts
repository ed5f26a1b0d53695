// The Azure Blob Storage client of object-storage.ts (@azure/storage-blob), for abs:// URLs.
// As in Dragonfly's client: the URL's host is the container, the access key id the account
// name, the access key secret the account key, and the endpoint the account's blob service
// (https://<account>.blob.core.windows.net, or Azurite's http://127.0.0.1:10000/<account>).
import type { Readable } from "node:stream";
import { BlobServiceClient, RestError, StorageSharedKeyCredential } from "@azure/storage-blob";
import { storeAnswered, strongEtag, totalOfContentRange, unreached, type ListedObject, type ObjectInfo, type ObjectRead, type ObjectStore, type StoreContext } from "./object-storage.js";
import { BackendError, type ByteRange } from "./types.js";

export function createAzureStore(ctx: StoreContext): Promise<ObjectStore> {
  const os = ctx.options;
  // object-url.ts checked these are set.
  const endpoint = os.endpoint ?? "";
  if (os.insecureSkipVerify === true && endpoint.startsWith("https:")) {
    // The SDK's pipeline offers no switch for it; refusing beats silently verifying anyway.
    return Promise.reject(new BackendError("insecure skip verify is not supported for abs:// yet; use an http endpoint or a certificate the host trusts", 400));
  }
  const credential = new StorageSharedKeyCredential(os.accessKeyId ?? "", os.accessKeySecret ?? "");
  // The piece pipeline retries pieces itself (and goes to peers); one SDK retry for a dropped connection.
  const service = new BlobServiceClient(endpoint, credential, { retryOptions: { maxTries: 2 }, keepAliveOptions: { enable: true } });
  return Promise.resolve(new AzureStore(service));
}

class AzureStore implements ObjectStore {
  constructor(private readonly service: BlobServiceClient) {}

  async *list(container: string, prefix: string, pageSize: number, signal: AbortSignal | undefined): AsyncIterable<ListedObject[]> {
    const pages = this.service
      .getContainerClient(container)
      .listBlobsFlat({ abortSignal: signal, ...(prefix ? { prefix } : {}) })
      .byPage({ maxPageSize: pageSize });
    try {
      for await (const page of pages) yield page.segment.blobItems.map((b) => ({ key: b.name, size: b.properties.contentLength ?? 0 }));
    } catch (e) {
      throw failure(e, container);
    }
  }

  private blob(container: string, key: string) {
    return this.service.getContainerClient(container).getBlobClient(key);
  }

  async head(container: string, key: string, signal: AbortSignal | undefined): Promise<ObjectInfo> {
    try {
      const p = await this.blob(container, key).getProperties({ abortSignal: signal });
      if (p.contentLength === undefined) throw new BackendError("the store did not tell the blob's length", 502);
      return { size: p.contentLength, etag: strongEtag(p.etag), lastModified: p.lastModified };
    } catch (e) {
      throw failure(e, container);
    }
  }

  async read(container: string, key: string, range: ByteRange | undefined, version: string | undefined, signal: AbortSignal | undefined): Promise<ObjectRead> {
    try {
      const r = await this.blob(container, key).download(range?.start ?? 0, range?.length, {
        abortSignal: signal,
        ...(version !== undefined ? { conditions: { ifMatch: version } } : {}),
        // A broken body is retried by the piece pipeline, which also checks the piece's length.
        maxRetryRequests: 0,
      });
      if (!r.readableStreamBody) throw new BackendError("the store answered without a body", 502);
      return { body: r.readableStreamBody as Readable, etag: strongEtag(r.etag), total: totalOfContentRange(r.contentRange) ?? r.contentLength };
    } catch (e) {
      throw failure(e, container);
    }
  }

  close(): void {
    // The SDK's connections close with the process' idle keep-alive; nothing to release.
  }
}

/** The SDK's error as the reason a user can act on; x-ms-error-code tells a missing container from a missing blob. */
function failure(e: unknown, container: string): BackendError {
  if (e instanceof BackendError) return e;
  if (!(e instanceof RestError) || e.statusCode === undefined) return unreached(e);
  const status = e.statusCode;
  const code = e.code ?? (e.response?.headers.get("x-ms-error-code") || undefined);
  if (status === 404) {
    if (code === "ContainerNotFound") return new BackendError(`container "${container}" does not exist`, 404);
    return new BackendError("no such blob", 404);
  }
  if (status === 403) return new BackendError(`access denied (403 ${code ?? "Forbidden"}): the store refused the account name and key, or they may not read this blob`, 403);
  return storeAnswered(status, code);
}
