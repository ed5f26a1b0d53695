// Codecs and digests over whole pieces. The *Async variants run on the addon's worker
// threads (not libuv's pool, which fs and dns share); input Buffers must stay unmodified
// until their promise settles. The addon exports one function per operation (an optional
// output Buffer selects its allocation-free form); the separate names below are this facade's.
import { binding } from "./binding.js";
import { nativeAsync } from "./errors.js";

export type DigestAlgorithm = "crc32" | "crc32c" | "sha256" | "blake3";

/** zstd level 1–19; `workers` > 0 compresses one piece on that many extra threads. */
export const zstdCompress = (input: Buffer, level: number, workers?: number): Buffer => binding.zstdCompress(input, level, workers) as Buffer;
export const zstdDecompress = (input: Buffer, maxLength: number): Buffer => binding.zstdDecompress(input, maxLength) as Buffer;
export const zstdCompressAsync = (input: Buffer, level: number, workers?: number): Promise<Buffer> =>
  nativeAsync(binding.zstdCompressAsync(input, level, workers));
export const zstdDecompressAsync = (input: Buffer, maxLength: number): Promise<Buffer> => nativeAsync(binding.zstdDecompressAsync(input, maxLength));

/** Raw AES-256-GCM with an explicit 12-byte nonce (output: ciphertext ‖ 16-byte tag). */
export const aesGcmSeal = (key: Buffer, nonce: Buffer, plain: Buffer): Buffer => binding.aesGcmSeal(key, nonce, plain);
export const aesGcmOpen = (key: Buffer, nonce: Buffer, sealed: Buffer): Buffer => binding.aesGcmOpen(key, nonce, sealed);

/** Seals piece `number` of `taskId` (nonce derived from both; number bound as AAD). */
export const sealPiece = (key: Buffer, taskId: string, number: number, plain: Buffer): Buffer => binding.sealPiece(key, taskId, number, plain) as Buffer;
/** Opens a sealed piece; throws DF_AUTH before releasing any byte if the tag fails. */
export const openPiece = (key: Buffer, taskId: string, number: number, sealed: Buffer): Buffer => binding.openPiece(key, taskId, number, sealed);
/** Seals several pieces in parallel on all cores. */
export const sealPieces = async (key: Buffer, taskId: string, numbers: number[], pieces: Buffer[]): Promise<Buffer[]> =>
  (await nativeAsync(binding.sealPieces(key, taskId, numbers, pieces))) as Buffer[];
export const openPieces = (key: Buffer, taskId: string, numbers: number[], pieces: Buffer[]): Promise<Buffer[]> =>
  nativeAsync(binding.openPieces(key, taskId, numbers, pieces));

/** `alg:value` digest; "crc32" yields Dragonfly's `crc32:<decimal>`. */
export const digest = (algorithm: DigestAlgorithm, data: Buffer): string => binding.digest(algorithm, data);
/** Throws DF_DIGEST_MISMATCH when `data` does not match `expected` (`alg:value`), DF_INVALID_ARGUMENT if it names no algorithm. */
export const verifyDigest = (expected: string, data: Buffer): void => {
  binding.digest(expected.split(":", 1)[0] ?? "", data, expected);
};

/** Incremental digest for a piece that arrives in chunks. */
export class DigestHasher {
  private readonly inner;

  constructor(algorithm: string) {
    this.inner = new binding.DigestHasher(algorithm);
  }

  update(chunk: Buffer): this {
    this.inner.update(chunk);
    return this;
  }

  /** `update` on a worker thread; await each call before the next so the order holds. */
  updateAsync(chunk: Buffer): Promise<void> {
    return nativeAsync(this.inner.updateAsync(chunk));
  }

  /** `alg:value`; the hasher is finished afterwards. */
  digest(): string {
    return this.inner.digest();
  }
}

/** `digest` on a worker thread: one update of an incremental hasher, which the addon runs there. */
export const digestAsync = async (algorithm: DigestAlgorithm, data: Buffer): Promise<string> => {
  const h = new DigestHasher(algorithm);
  await h.updateAsync(data);
  return h.digest();
};

// Allocation-free variants: the caller owns and reuses the output Buffers. A fresh multi-MiB
// Buffer per call costs page faults comparable to the codec work itself, so hot paths (and a
// daemon that keeps a pool of piece buffers) use these.

/**
 * Upper bound of the compressed size of `length` input bytes: zstd's ZSTD_COMPRESSBOUND formula
 * (zstd.h), computed here rather than across the boundary. It bounds one frame, which is what
 * zstdCompressInto writes with or without workers.
 */
export const zstdCompressBound = (length: number): number => length + Math.floor(length / 256) + (length < 128 << 10 ? Math.floor(((128 << 10) - length) / 2048) : 0);
/** Compresses into `out`; returns the compressed length. */
export const zstdCompressInto = (input: Buffer, level: number, out: Buffer, workers?: number): number => binding.zstdCompress(input, level, workers, out) as number;
/** Decompresses into `out`; returns the length (DF_CODEC if the frame does not fit). */
export const zstdDecompressInto = (input: Buffer, out: Buffer): number => binding.zstdDecompress(input, out) as number;
/** Seals a piece into `out`, which must be `plain.length + 16` bytes. */
export const sealPieceInto = (key: Buffer, taskId: string, number: number, plain: Buffer, out: Buffer): void => {
  binding.sealPiece(key, taskId, number, plain, out);
};
/** Seals several pieces into `outs` on all cores; `outs` must stay untouched until it resolves. */
export const sealPiecesInto = async (key: Buffer, taskId: string, numbers: number[], pieces: Buffer[], outs: Buffer[]): Promise<void> => {
  await nativeAsync(binding.sealPieces(key, taskId, numbers, pieces, outs));
};

/** Streaming zstd compression of one piece that arrives in chunks (output: one standard frame). */
export class ZstdEncoder {
  private readonly inner;

  constructor(level: number) {
    this.inner = new binding.ZstdEncoder(level);
  }

  /** Compressed bytes ready so far (often empty). */
  push(chunk: Buffer): Buffer {
    return this.inner.push(chunk);
  }

  finish(): Buffer {
    return this.inner.finish();
  }
}

/** Streaming zstd decompression of one piece of known length; DF_CODEC past or short of it. */
export class ZstdDecoder {
  private readonly inner;

  constructor(expectedLength: number) {
    this.inner = new binding.ZstdDecoder(expectedLength);
  }

  push(chunk: Buffer): Buffer {
    return this.inner.push(chunk);
  }

  finish(): Buffer {
    return this.inner.finish();
  }
}
