// The JS back-to-source path's piece buffer pool: a buffer given back is the next one taken of
// its length, other lengths get fresh ones, and no more idle bytes than the cap are kept.
import { describe, expect, it } from "vitest";
import { PieceBufferPool } from "../../src/daemon/task/piece-buffers.js";

const MiB = 1024 * 1024;

describe("PieceBufferPool", () => {
  it("hands a given-back buffer out again for its length only", () => {
    const pool = new PieceBufferPool(8 * MiB);
    const a = pool.take(4 * MiB);
    expect(a.length).toBe(4 * MiB);
    pool.give(a);
    expect(pool.take(MiB)).not.toBe(a);
    expect(pool.take(4 * MiB)).toBe(a);
    expect(pool.take(4 * MiB)).not.toBe(a);
  });

  it("keeps no more idle bytes than its cap", () => {
    const pool = new PieceBufferPool(8 * MiB);
    const bufs = [pool.take(4 * MiB), pool.take(4 * MiB), pool.take(4 * MiB)];
    for (const b of bufs) pool.give(b);
    const again = [pool.take(4 * MiB), pool.take(4 * MiB), pool.take(4 * MiB)];
    expect(again.filter((b) => bufs.includes(b))).toHaveLength(2);
    expect(bufs.includes(again[2]!)).toBe(false);
  });
});
