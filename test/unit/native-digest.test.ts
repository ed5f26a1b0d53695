import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  DigestHasher,
  digest,
  digestAsync,
  isNativeError,
  openPiece,
  openPieces,
  sealPiece,
  sealPieces,
  verifyDigest,
  ZstdDecoder,
  ZstdEncoder,
  zstdCompressAsync,
  zstdCompressBound,
  zstdCompressInto,
  zstdDecompress,
  zstdDecompressInto,
  sealPieceInto,
  zstdDecompressAsync,
  sealPiecesInto,
} from "../../src/native/index.js";

const TASK = "06408fbf247ddaca478f8cb9565fe5591c28efd0994b8fea80a6a87d3203c5ca";

describe("native digests", () => {
  it("renders crc32 the way Dragonfly does (decimal, no padding)", () => {
    expect(digest("crc32", Buffer.from("hello"))).toBe("crc32:907060870");
    expect(digest("crc32c", Buffer.from("123456789"))).toBe("crc32c:e3069283");
  });

  it("matches node:crypto for sha256 and is incremental", async () => {
    const data = randomBytes(3 << 20);
    const want = `sha256:${createHash("sha256").update(data).digest("hex")}`;
    expect(digest("sha256", data)).toBe(want);
    expect(await digestAsync("sha256", data)).toBe(want);
    for (const alg of ["crc32", "crc32c", "sha256", "blake3"] as const) {
      const h = new DigestHasher(alg);
      for (let off = 0; off < data.length; off += 100_003) h.update(data.subarray(off, off + 100_003));
      expect(h.digest()).toBe(digest(alg, data));
    }
  });

  it("rejects corrupt bytes with DF_DIGEST_MISMATCH", async () => {
    const data = randomBytes(4096);
    const d = digest("blake3", data);
    verifyDigest(d, data);
    data[10] = (data[10] ?? 0) ^ 1;
    expect(() => verifyDigest(d, data)).toThrowError(expect.objectContaining({ code: "DF_DIGEST_MISMATCH" }) as Error);
    expect(() => verifyDigest(d.toUpperCase().replace("BLAKE3", "blake3"), data)).toThrowError(expect.objectContaining({ code: "DF_DIGEST_MISMATCH" }) as Error);
    data[10] = (data[10] ?? 0) ^ 1;
    // Hex case is ignored, as before; a digest without its algorithm is refused, not compared.
    verifyDigest(d.toUpperCase().replace("BLAKE3", "blake3"), data);
    expect(() => verifyDigest("blake3", data)).toThrowError(expect.objectContaining({ code: "DF_INVALID_ARGUMENT" }) as Error);
    expect(() => verifyDigest(d.replace("blake3", "sha256"), data)).toThrowError(expect.objectContaining({ code: "DF_DIGEST_MISMATCH" }) as Error);
    expect(() => new DigestHasher("md4")).toThrowError(expect.objectContaining({ code: "DF_INVALID_ARGUMENT" }) as Error);
    await expect(digestAsync("md4" as "sha256", data)).rejects.toMatchObject({ code: "DF_INVALID_ARGUMENT" });
  });
});

describe("native per-piece codecs", () => {
  const key = randomBytes(32);

  it("seals pieces with a nonce from (task, piece) and refuses tampering by tag", async () => {
    const plain = randomBytes(100_000);
    const sealed = sealPiece(key, TASK, 4, plain);
    expect(openPiece(key, TASK, 4, sealed).equals(plain)).toBe(true);
    // Same piece sealed twice is identical (deterministic nonce); another piece differs.
    expect(sealPiece(key, TASK, 4, plain).equals(sealed)).toBe(true);
    expect(sealPiece(key, TASK, 5, plain).equals(sealed)).toBe(false);
    const bad = Buffer.from(sealed);
    bad[500] = (bad[500] ?? 0) ^ 0x10;
    expect(() => openPiece(key, TASK, 4, bad)).toThrowError(expect.objectContaining({ code: "DF_AUTH" }) as Error);
    expect(() => openPiece(key, TASK, 5, sealed)).toThrowError(expect.objectContaining({ code: "DF_AUTH" }) as Error);
    const many = await sealPieces(key, TASK, [0, 1], [plain, plain.subarray(0, 10)]);
    expect(many[0]?.equals(sealPiece(key, TASK, 0, plain))).toBe(true);
    const back = await openPieces(key, TASK, [0, 1], many);
    expect(back[1]?.equals(plain.subarray(0, 10))).toBe(true);
    try {
      await openPieces(key, TASK, [0, 1], [many[0] ?? Buffer.alloc(0), bad]);
      expect.unreachable();
    } catch (e) {
      expect(isNativeError(e) && e.code).toBe("DF_AUTH");
    }
  });

  it("compresses off the JS thread, also with worker threads", async () => {
    const piece = Buffer.from("damselfly piece ".repeat(200_000));
    for (const workers of [0, 2]) {
      const packed = await zstdCompressAsync(piece, 3, workers);
      expect(packed.length).toBeLessThan(piece.length / 20);
      expect((await zstdDecompressAsync(packed, piece.length)).equals(piece)).toBe(true);
    }
    try {
      await zstdDecompressAsync(Buffer.from("not zstd"), 100);
      expect.unreachable();
    } catch (e) {
      expect(isNativeError(e) && e.code).toBe("DF_CODEC");
    }
  });

  it("streams zstd per piece in chunks and bounds the output", () => {
    const piece = Buffer.concat([Buffer.from("vortex ".repeat(100_000)), randomBytes(50_000)]);
    const enc = new ZstdEncoder(5);
    const parts: Buffer[] = [];
    for (let off = 0; off < piece.length; off += 65_536) parts.push(enc.push(piece.subarray(off, off + 65_536)));
    parts.push(enc.finish());
    const frame = Buffer.concat(parts);
    expect(zstdDecompress(frame, piece.length).equals(piece)).toBe(true);
    const dec = new ZstdDecoder(piece.length);
    const out: Buffer[] = [];
    for (let off = 0; off < frame.length; off += 4096) out.push(dec.push(frame.subarray(off, off + 4096)));
    out.push(dec.finish());
    expect(Buffer.concat(out).equals(piece)).toBe(true);
    const short = new ZstdDecoder(piece.length);
    short.push(frame.subarray(0, frame.length >> 1));
    expect(() => short.finish()).toThrowError(expect.objectContaining({ code: "DF_CODEC" }) as Error);
    expect(() => new ZstdDecoder(10).push(frame)).toThrowError(expect.objectContaining({ code: "DF_CODEC" }) as Error);
  });

  it("offers allocation-free variants that match the allocating ones", () => {
    const piece = Buffer.from("allocation free ".repeat(50_000));
    const out = Buffer.alloc(zstdCompressBound(piece.length));
    const n = zstdCompressInto(piece, 3, out);
    const back = Buffer.alloc(piece.length);
    expect(zstdDecompressInto(out.subarray(0, n), back)).toBe(piece.length);
    expect(back.equals(piece)).toBe(true);
    const sealed = Buffer.alloc(piece.length + 16);
    sealPieceInto(key, TASK, 9, piece, sealed);
    expect(sealed.equals(sealPiece(key, TASK, 9, piece))).toBe(true);
    expect(() => sealPieceInto(key, TASK, 9, piece, Buffer.alloc(3))).toThrowError(expect.objectContaining({ code: "DF_INVALID_ARGUMENT" }) as Error);
  });

  it("seals a batch into caller buffers, the same bytes as one by one", async () => {
    const pieces = [randomBytes(70_000), randomBytes(5)];
    const outs = pieces.map((p) => Buffer.alloc(p.length + 16));
    await sealPiecesInto(key, TASK, [3, 4], pieces, outs);
    expect(outs[0]?.equals(sealPiece(key, TASK, 3, pieces[0] ?? Buffer.alloc(0)))).toBe(true);
    expect(outs[1]?.equals(sealPiece(key, TASK, 4, pieces[1] ?? Buffer.alloc(0)))).toBe(true);
    await expect(sealPiecesInto(key, TASK, [3, 4], pieces, outs.slice(0, 1))).rejects.toMatchObject({ code: "DF_INVALID_ARGUMENT" });
  });

  it("bounds compressed output by zstd's formula, also for incompressible pieces", () => {
    // The bound is computed in TS; zstd must never need more, least of all where the formula's
    // small-input margin applies (below 128 KiB) or for noise.
    for (const length of [0, 1, 100, 2047, 2048, 65_536, 128 << 10, (128 << 10) + 1, 1 << 20]) {
      const piece = randomBytes(length);
      const out = Buffer.alloc(zstdCompressBound(length));
      const n = zstdCompressInto(piece, 3, out);
      expect(n).toBeLessThanOrEqual(out.length);
      expect(zstdDecompress(out.subarray(0, n), length).equals(piece)).toBe(true);
    }
    expect(zstdCompressBound(0)).toBe(64);
    expect(zstdCompressBound(4 << 20)).toBe((4 << 20) + (4 << 12));
  });
});
