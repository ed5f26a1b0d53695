// Back-to-source as one stream: a single ranged GET for the whole content, read in order into
// piece-sized aligned buffers. Each piece is written to the store (O_DIRECT straight from the
// buffer), handed with its bytes to whoever serves them right away (the proxy), and fed to the
// whole-content hasher on a worker thread, all at once — the bytes are never read back. One
// request instead of one per piece also spares the origin a request per 4 MiB, which for a
// registry costs about as much as sending the piece. Memory is bounded: at most IN_FLIGHT
// buffers being read, stored or hashed per download, plus the couple of pieces each client's
// response may keep (proxy/stream.ts); a buffer is reused only once the store, the hasher and
// every listener that kept it are done with it, and a stalled client never holds the download up.
// The request carries the task's pin (backend/pin.ts); pieces the task holds already are not
// rewritten but compared with the bytes, so a stream of another version fails instead of mixing.
import { pieceRange } from "../../common/piece.js";
import type { BackendError, OriginRoute } from "../backend/index.js";
import { describePin, OriginChangedError, type OriginPin } from "../backend/pin.js";
import { allocPieceBuffer, DigestHasher, openOriginBody, type OriginBody } from "../../native/index.js";
import type { PieceInfo, TaskStore } from "../storage/types.js";

/** Algorithms the native hasher computes; others are verified from the stored content. */
const STREAM_DIGESTS = new Set(["sha256", "blake3", "crc32"]);
/** Piece buffers one download may have in use: reading, storing/hashing, and being sent. */
const IN_FLIGHT = 6;
/** Idle buffers kept across downloads (fresh ones cost page faults as much as the copy). */
const POOL_BYTES = 64 * 1024 * 1024;

const idle = new Map<number, Buffer[]>();
let idleBytes = 0;

function takeBuffer(length: number): Buffer {
  const list = idle.get(length);
  const b = list?.pop();
  if (b) {
    idleBytes -= b.length;
    return b;
  }
  return allocPieceBuffer(length);
}

function giveBack(b: Buffer): void {
  if (idleBytes + b.length > POOL_BYTES) return;
  let list = idle.get(b.length);
  if (!list) idle.set(b.length, (list = []));
  list.push(b);
  idleBytes += b.length;
}

/**
 * Checks a piece the task holds against the same piece of a whole-content response (by the
 * wire digest, CRC-32): a difference means the task holds another version's bytes.
 */
export function sameAsHeld(url: string, held: PieceInfo, data: Buffer, pin: OriginPin | undefined): void {
  const got = new DigestHasher("crc32").update(data).digest();
  if (got !== held.digest) {
    const pinned = pin ? ` (pinned to ${describePin(pin)})` : "";
    throw new OriginChangedError(`${url}: origin content changed: piece ${held.number} now has ${got}, the task holds it with ${held.digest}${pinned}`, undefined, {}, false);
  }
}

export interface StreamedPiece {
  info: PieceInfo;
  /** The piece's bytes; valid until the promise onPiece returned settles. */
  data: Buffer;
}

export interface StreamOptions {
  task: TaskStore;
  route: OriginRoute;
  /** Whole-content digest to compute on the way (`sha256`, …); undefined = none. */
  digestAlgorithm?: string | undefined;
  signal?: AbortSignal | undefined;
  toBackendError(e: unknown): BackendError;
  /** A piece is stored; its bytes stay valid until the returned promise settles. */
  onPiece(piece: StreamedPiece): Promise<unknown>;
  /** Resolves once the daemon's download bandwidth allows reading `bytes` more. */
  pace?(bytes: number): Promise<void>;
}

/**
 * Streams the whole content into the store. Resolves with the content digest (`alg:hex`) when
 * one was asked for and the algorithm is computed natively, else undefined. On failure the
 * pieces stored so far stay; the caller fetches the rest another way.
 */
export async function streamFromOrigin(o: StreamOptions): Promise<string | undefined> {
  const { task, route } = o;
  const { contentLength, pieceLength, pieceCount } = task.meta;
  const hasher = o.digestAlgorithm !== undefined && STREAM_DIGESTS.has(o.digestAlgorithm) ? new DigestHasher(o.digestAlgorithm) : undefined;
  let body: OriginBody;
  try {
    const pin = route.pin && { etag: route.pin.etag, lastModified: route.pin.lastModified };
    body = await openOriginBody({ addr: route.addr, host: route.host, path: route.path, headers: route.headers, pin, offset: 0, length: contentLength, contentLength, connectTimeoutMs: 10_000, readTimeoutMs: 60_000 }, o.signal);
  } catch (e) {
    throw o.toBackendError(e);
  }
  const inFlight = new Set<Promise<void>>();
  let failure: Error | undefined;
  let hashed: Promise<void> = Promise.resolve();
  try {
    for (let n = 0; n < pieceCount; n++) {
      while (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
      if (failure !== undefined) throw failure;
      const { length } = pieceRange(n, contentLength, pieceLength);
      await o.pace?.(length);
      const whole = takeBuffer(pieceLength);
      const data = length === pieceLength ? whole : whole.subarray(0, length);
      const createdAt = Date.now();
      try {
        await body.read(data);
      } catch (e) {
        giveBack(whole);
        throw o.toBackendError(e);
      }
      // In order, one update after the other, on a worker thread.
      if (hasher) hashed = hashed.then(() => hasher.updateAsync(data));
      const hash = hashed;
      const held = task.piece(n);
      if (held) {
        // Landed before (from a parent, an earlier attempt): reported then, checked now.
        hash.then(
          () => giveBack(whole),
          () => undefined,
        );
        sameAsHeld(route.url, held, data, route.pin);
        continue;
      }
      const work = (async () => {
        try {
          const info = await task.writePiece(n, data, createdAt, o.signal);
          // A listener may keep the bytes for as long as its client takes (a stalled client
          // holds a couple of pieces at most): the download goes on without the buffer, which
          // is reused once everyone is done with it. A failed hash or write may still have
          // it in a native call: then it is never reused.
          const kept = o.onPiece({ info, data });
          Promise.all([hash, kept]).then(
            () => giveBack(whole),
            () => undefined,
          );
          await hash;
        } catch (e) {
          failure ??= e instanceof Error ? e : new Error(String(e));
        }
      })();
      const done: Promise<void> = work.then(() => {
        inFlight.delete(done);
      });
      inFlight.add(done);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    await hashed;
    return hasher?.digest();
  } catch (e) {
    body.close();
    await Promise.allSettled(inFlight);
    await hashed.catch(() => undefined);
    throw e;
  }
}
