import { mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync, closeSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { allocPieceBuffer, digest, openTaskStore, deleteTaskStore, type NativeTaskStore } from "../../src/native/index.js";
import { codeOf } from "../helpers/native.js";

const TASK = "5844f27a257287e9b734256bb25603d8005422ced8c0377f15063ec11963b25f";

function bytes(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  let x = seed | 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

describe("native piece store", () => {
  let dir: string;
  const piece = 64 * 1024;
  const content = piece * 3 + 777;
  const data = bytes(content, 7);
  const slice = (n: number): Buffer => data.subarray(n * piece, Math.min(content, (n + 1) * piece));
  let store: NativeTaskStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "df-store-"));
    store = openTaskStore({ dataDir: dir, taskId: TASK, contentLength: content, pieceLength: piece, extraDigest: "sha256" });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("preallocates the content file and reports the I/O mode it uses", () => {
    const info = store.info();
    expect(info.pieceCount).toBe(4);
    expect(info.contentPath).toBe(join(dir, TASK, "content"));
    expect(statSync(info.contentPath).size).toBe(content);
    expect(["direct", "buffered"]).toContain(info.ioMode);
    expect(["io_uring", "threads"]).toContain(info.ioEngine);
    expect(info.extraDigest).toBe("sha256");
  });

  it("writes pieces at fixed offsets and returns Dragonfly's crc32 digest", async () => {
    for (const n of [3, 1, 0, 2]) {
      const rec = await store.writePiece(n, slice(n), "parent-1", 1_700_000_000_000);
      expect(rec.digest).toBe(digest("crc32", slice(n)));
      expect(rec.digest).toMatch(/^crc32:\d+$/);
      expect(rec.extraDigest).toBe(digest("sha256", slice(n)));
      expect(rec.offset).toBe(n * piece);
      expect(rec.length).toBe(slice(n).length);
      expect(rec.parentId).toBe("parent-1");
      // The short last piece cannot use O_DIRECT and says so.
      expect(rec.ioMode).toBe(n === 3 || store.info().ioMode === "buffered" ? "buffered" : "direct");
    }
    expect(readFileSync(store.info().contentPath).equals(data)).toBe(true);
    expect((await store.readPiece(3)).equals(slice(3))).toBe(true);
    expect(store.finishedPieces().map((p) => p.number)).toEqual([0, 1, 2, 3]);
    expect(store.finishedCount()).toBe(4);
    expect((await store.verifyPiece(2)).number).toBe(2);
  });

  it("writes from an aligned piece buffer without a copy, with the same result", async () => {
    const b = allocPieceBuffer(piece);
    expect(b.length).toBe(piece);
    expect(b.every((x) => x === 0)).toBe(true);
    slice(1).copy(b);
    const rec = await store.writePiece(1, b);
    expect(rec.digest).toBe(digest("crc32", slice(1)));
    expect(rec.ioMode).toBe(store.info().ioMode);
    expect((await store.readPiece(1)).equals(slice(1))).toBe(true);
  });

  it("refuses to read a piece that never finished with DF_PIECE_NOT_FINISHED", async () => {
    await store.writePiece(0, slice(0));
    expect(await codeOf(store.readPiece(1))).toBe("DF_PIECE_NOT_FINISHED");
    expect(await codeOf(store.verifyPiece(1))).toBe("DF_PIECE_NOT_FINISHED");
    expect(store.piece(1)).toBeUndefined();
    expect(await codeOf(store.readPiece(9))).toBe("DF_INVALID_ARGUMENT");
    expect(await codeOf(store.writePiece(1, Buffer.alloc(3)))).toBe("DF_INVALID_ARGUMENT");
  });

  it("detects corrupt bytes on disk and unmarks the piece", async () => {
    await store.writePiece(1, slice(1));
    const fd = openSync(store.info().contentPath, "r+");
    writeSync(fd, Buffer.from("corrupt"), 0, 7, piece + 5);
    closeSync(fd);
    expect(await codeOf(store.verifyPiece(1))).toBe("DF_DIGEST_MISMATCH");
    expect(store.piece(1)).toBeUndefined();
    expect(await codeOf(store.readPiece(1))).toBe("DF_PIECE_NOT_FINISHED");
  });

  it("keeps finished pieces across reopen and rejects another layout", async () => {
    await store.writePiece(2, slice(2));
    const again = openTaskStore({ dataDir: dir, taskId: TASK, contentLength: content, pieceLength: piece });
    expect(again.piece(2)?.digest).toBe(digest("crc32", slice(2)));
    expect(() => openTaskStore({ dataDir: dir, taskId: TASK, contentLength: content + 1, pieceLength: piece })).toThrowError(
      expect.objectContaining({ code: "DF_INVALID_ARGUMENT" }) as Error,
    );
  });

  it("rejects task ids that could name another path", () => {
    for (const taskId of ["../x", "a/b", ".", ""]) {
      expect(() => openTaskStore({ dataDir: dir, taskId, contentLength: 1, pieceLength: 1 })).toThrowError(
        expect.objectContaining({ code: "DF_INVALID_ARGUMENT" }) as Error,
      );
    }
  });

  it("deletes a task", async () => {
    await store.writePiece(0, slice(0));
    deleteTaskStore(dir, TASK);
    expect(existsSync(join(dir, TASK))).toBe(false);
    expect(await codeOf(store.readPiece(0))).toBe("DF_NOT_FOUND");
  });

  it("serves the same API on the tmpfs tier", async () => {
    if (!existsSync("/dev/shm")) return;
    const shm = mkdtempSync("/dev/shm/df-store-");
    try {
      const t = openTaskStore({ dataDir: shm, taskId: TASK, contentLength: content, pieceLength: piece, tier: "tmpfs" });
      expect(t.info().tier).toBe("tmpfs");
      expect(t.info().ioMode).toBe("buffered");
      await t.writePiece(3, slice(3));
      expect((await t.readPiece(3)).equals(slice(3))).toBe(true);
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  });
});
