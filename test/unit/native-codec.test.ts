import { describe, expect, it } from "vitest";
import { aesGcmOpen, aesGcmSeal, isNativeError, zstdCompress, zstdDecompress } from "../../src/native/index.js";

describe("native codecs", () => {
  const key = Buffer.alloc(32, 3);
  const nonce = Buffer.alloc(12, 4);

  it("round-trips a piece through zstd", () => {
    const piece = Buffer.from("piece ".repeat(10_000));
    const packed = zstdCompress(piece, 3);
    expect(packed.length).toBeLessThan(piece.length / 10);
    expect(zstdDecompress(packed, piece.length).equals(piece)).toBe(true);
  });

  it("refuses zstd output larger than the declared piece length", () => {
    const packed = zstdCompress(Buffer.alloc(1 << 20), 3);
    expect(() => zstdDecompress(packed, 1024)).toThrowError(expect.objectContaining({ code: "DF_CODEC" }) as Error);
  });

  it("rejects a zstd level outside 1..19 with a stable code", () => {
    try {
      zstdCompress(Buffer.from("x"), 22);
      expect.unreachable();
    } catch (e) {
      expect(isNativeError(e) && e.code).toBe("DF_INVALID_ARGUMENT");
    }
  });

  it("seals and opens with AES-256-GCM and refuses a flipped bit", () => {
    const plain = Buffer.from("secret piece bytes");
    const sealed = aesGcmSeal(key, nonce, plain);
    expect(sealed.length).toBe(plain.length + 16);
    expect(aesGcmOpen(key, nonce, sealed).equals(plain)).toBe(true);
    sealed[0] = (sealed[0] ?? 0) ^ 1;
    expect(() => aesGcmOpen(key, nonce, sealed)).toThrowError(expect.objectContaining({ code: "DF_AUTH" }) as Error);
  });

  it("names a wrong key length", () => {
    expect(() => aesGcmSeal(Buffer.alloc(16), nonce, Buffer.from("x"))).toThrowError(/32 bytes/);
  });
});
