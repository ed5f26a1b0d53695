// Back-to-source for an origin that does not tell the content length: a chunked
// (Transfer-Encoding) body, an HTTP/1.0-style body that ends when the origin closes, a ranged
// stat answered without Content-Length or Content-Range. Such an origin is read in ONE
// response; its length is known at EOF only. A task's layout (piece length, piece count, the
// native store's preallocated file) needs the length, and a task nobody can size must not be
// announced or served. So the bytes are staged first, in one file per download under the
// tier's staging directory (same filesystem as the store), hashed on the way for the
// requester's digest, and the task is created only at EOF from the staged file. The native
// origin client is not used here: its body reader fills buffers of a known length, and this
// rare path is not worth a second body API; undici reads chunked and close-delimited bodies.
// The cost is one extra local copy of the bytes. A failure anywhere removes the staging file,
// and no task exists yet: nothing is left behind. A task that will be sealed at rest is staged
// sealed (staging-file.ts): no plaintext byte of it reaches the disk.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, rm, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { DigestHasher } from "../../native/index.js";
import { BackendError, type Backend } from "../backend/index.js";
import { discard } from "../backend/http.js";
import { errorMessage } from "../../common/errors.js";
import { plainStaging, sealedStaging, type StagingFile } from "./staging-file.js";

/** Algorithms the native hasher computes; the others (sha512, md5, sha1) go through node:crypto. */
const NATIVE_DIGESTS = new Set(["sha256", "blake3", "crc32"]);

export interface StagedContent {
  /** Bytes the origin sent before it ended the body: the content length. */
  readonly length: number;
  /** The answer's headers: the task's response header (its pin's validators). */
  readonly headers: Record<string, string>;
  /** `alg:hex` of the whole content when a digest algorithm was asked for. */
  readonly digest: string | undefined;
  /** Reads `buf.length` bytes at `offset` of the staged content. */
  read(offset: number, buf: Buffer): Promise<void>;
  /** Removes the staging file. */
  discard(): Promise<void>;
}

export interface StageOptions {
  backend: Backend;
  url: string;
  headers: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** The tier's staging directory (Storage.stagingDir). */
  dir: string;
  digestAlgorithm?: string | undefined;
  /** The task will be sealed at rest: stage it sealed under a key of this download's own. */
  sealed?: boolean;
}

function hasherFor(algorithm: string): { update(b: Buffer): void; digest(): string } {
  if (NATIVE_DIGESTS.has(algorithm)) {
    const h = new DigestHasher(algorithm);
    return { update: (b) => void h.update(b), digest: () => h.digest() };
  }
  const h = createHash(algorithm);
  return { update: (b) => void h.update(b), digest: () => `${algorithm}:${h.digest("hex")}` };
}

/** Reads the origin's whole answer into a staging file; on failure nothing stays behind. */
export async function stageFromOrigin(o: StageOptions): Promise<StagedContent> {
  await mkdir(o.dir, { recursive: true });
  const path = join(o.dir, `${Date.now()}-${randomBytes(6).toString("hex")}`);
  let file: FileHandle | undefined;
  try {
    file = await open(path, "w+", 0o600);
    const staging: StagingFile = o.sealed ? sealedStaging(file, path) : plainStaging(file, path);
    const res = await o.backend.get({ url: o.url, headers: o.headers, signal: o.signal });
    const hasher = o.digestAlgorithm !== undefined ? hasherFor(o.digestAlgorithm) : undefined;
    let length = 0;
    // undici ends the iteration only at the body's real end: the last chunk of a chunked
    // body, or the close of a close-delimited one; a connection cut inside a chunk throws.
    const chunks = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await chunks.next();
      } catch (e) {
        throw new BackendError(`${o.url}: the origin's answer broke off after ${length} bytes: ${errorMessage(e)}`, res.statusCode, res.headers, !o.signal?.aborted);
      }
      if (next.done) break;
      try {
        await staging.append(next.value);
      } catch (e) {
        discard(res.body);
        throw e;
      }
      hasher?.update(next.value);
      length += next.value.length;
    }
    await staging.finish();
    const fh = file;
    return {
      length,
      headers: res.headers,
      digest: hasher?.digest(),
      read: (offset, buf) => staging.read(offset, buf),
      discard: async () => {
        await fh.close().catch(() => undefined);
        await rm(path, { force: true });
      },
    };
  } catch (e) {
    await file?.close().catch(() => undefined);
    await rm(path, { force: true });
    throw e;
  }
}
