import { mkdtempSync, openSync, readFileSync, rmSync, writeSync, closeSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTaskStore, startPieceServer, type NativeTaskStore, type PieceServer, type ServePath } from "../../src/native/index.js";
import { codeOf, pattern } from "../helpers/native.js";

const TASK = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
const PIECE = 256 * 1024;
const CONTENT = PIECE * 4 + 999;

const DATA = pattern(CONTENT, 2654435761, 13);
const slice = (n: number): Buffer => DATA.subarray(n * PIECE, Math.min(CONTENT, (n + 1) * PIECE));

/** Sends raw bytes and collects everything until the server closes. */
function exchange(port: number, bytes: Buffer, halfClose: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s: Socket = connect(port, "127.0.0.1", () => {
      s.write(bytes);
      if (halfClose) s.end();
    });
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", reject);
    s.on("close", () => resolve(Buffer.concat(chunks)));
  });
}

function downloadPiece(taskId: string, n: number): Buffer {
  const b = Buffer.alloc(74);
  b[0] = 0x2a;
  b[1] = 0;
  b.writeUInt32BE(68, 2);
  b.write(taskId, 6, "latin1");
  b.writeUInt32BE(n, 70);
  return b;
}

function expectErrorFrameThenClose(reply: Buffer, code: number): void {
  expect(reply.length).toBeGreaterThan(6);
  expect(reply[1]).toBe(255);
  expect(reply.length).toBe(6 + reply.readUInt32BE(2));
  expect(reply[6]).toBe(code);
}

describe("native vortex piece server and client", () => {
  let src: string;
  let server: PieceServer;
  let srcStore: NativeTaskStore;

  beforeAll(async () => {
    src = mkdtempSync(join(tmpdir(), "df-src-"));
    srcStore = openTaskStore({ dataDir: src, taskId: TASK, contentLength: CONTENT, pieceLength: PIECE });
    for (let n = 0; n < 4; n++) await srcStore.writePiece(n, slice(n));
    server = await startPieceServer({ host: "127.0.0.1", port: 0, dataDir: src });
  });
  afterAll(async () => {
    await server.close();
    rmSync(src, { recursive: true, force: true });
  });

  it.each(["sendfile", "splice", "buffered"] as ServePath[])("moves verified pieces parent → child over %s", async (servePath) => {
    const s = await startPieceServer({ host: "127.0.0.1", port: 0, dataDir: src, servePath });
    const dst = mkdtempSync(join(tmpdir(), "df-dst-"));
    try {
      const store = openTaskStore({ dataDir: dst, taskId: TASK, contentLength: CONTENT, pieceLength: PIECE });
      for (let n = 0; n < 4; n++) {
        const rec = await store.fetchPiece({ addr: `127.0.0.1:${s.port}`, number: n, parentId: "parent" });
        expect(rec.digest).toBe(srcStore.piece(n)?.digest);
      }
      expect(store.finishedCount()).toBe(4);
      const stats = s.stats();
      expect(stats.piecesServed).toBe(4);
      expect(stats.bytesServed).toBe(4 * PIECE);
      expect(s.drainUploads().map((u) => u.number)).toEqual([0, 1, 2, 3]);
      expect(s.servePath).toBe(servePath);
    } finally {
      await s.close();
      rmSync(dst, { recursive: true, force: true });
    }
  });

  it("reports a piece the parent does not have as DF_NOT_FOUND and marks nothing", async () => {
    const dst = mkdtempSync(join(tmpdir(), "df-dst-"));
    try {
      const store = openTaskStore({ dataDir: dst, taskId: TASK, contentLength: CONTENT, pieceLength: PIECE });
      expect(await codeOf(store.fetchPiece({ addr: `127.0.0.1:${server.port}`, number: 4 }))).toBe("DF_NOT_FOUND");
      expect(store.finishedCount()).toBe(0);
    } finally {
      rmSync(dst, { recursive: true, force: true });
    }
  });

  it("refuses a request beyond its upload slots as DF_BUSY, marks nothing, and serves it once a slot is free", async () => {
    // One slot, no waiting place; 256 KiB/s keeps the first send going for about a second.
    const s = await startPieceServer({ host: "127.0.0.1", port: 0, dataDir: src, uploadSlots: 1, uploadQueue: 0, rateLimitBytesPerSec: PIECE });
    const dst = mkdtempSync(join(tmpdir(), "df-dst-"));
    try {
      const store = openTaskStore({ dataDir: dst, taskId: TASK, contentLength: CONTENT, pieceLength: PIECE });
      const first = store.fetchPiece({ addr: `127.0.0.1:${s.port}`, number: 0 });
      while (s.stats().bytesServed === 0) await new Promise((r) => setTimeout(r, 5));
      expect(await codeOf(store.fetchPiece({ addr: `127.0.0.1:${s.port}`, number: 1 }))).toBe("DF_BUSY");
      expect(store.piece(1)).toBeUndefined();
      await first;
      await store.fetchPiece({ addr: `127.0.0.1:${s.port}`, number: 1 });
      expect(store.finishedCount()).toBe(2);
    } finally {
      await s.close();
      rmSync(dst, { recursive: true, force: true });
    }
  });

  it("rejects corrupt bytes from a parent with DF_DIGEST_MISMATCH", async () => {
    const other = "1".repeat(64);
    const bad = mkdtempSync(join(tmpdir(), "df-bad-"));
    const dst = mkdtempSync(join(tmpdir(), "df-dst-"));
    try {
      const parent = openTaskStore({ dataDir: bad, taskId: other, contentLength: CONTENT, pieceLength: PIECE, direct: false });
      await parent.writePiece(1, slice(1));
      const fd = openSync(parent.info().contentPath, "r+");
      writeSync(fd, Buffer.from("flipped"), 0, 7, PIECE + 1000);
      closeSync(fd);
      const s = await startPieceServer({ host: "127.0.0.1", port: 0, dataDir: bad });
      const store = openTaskStore({ dataDir: dst, taskId: other, contentLength: CONTENT, pieceLength: PIECE });
      expect(await codeOf(store.fetchPiece({ addr: `127.0.0.1:${s.port}`, number: 1 }))).toBe("DF_DIGEST_MISMATCH");
      expect(store.piece(1)).toBeUndefined();
      await s.close();
    } finally {
      rmSync(bad, { recursive: true, force: true });
      rmSync(dst, { recursive: true, force: true });
    }
  });

  it("answers truncated, oversized and hostile frames with an Error frame and closes", async () => {
    const valid = downloadPiece(TASK, 0);
    const oversized = Buffer.from(valid);
    oversized.writeUInt32BE(16 << 20, 2);
    expectErrorFrameThenClose(await exchange(server.port, oversized, false), 1);
    expectErrorFrameThenClose(await exchange(server.port, valid.subarray(0, 30), true), 1);
    expectErrorFrameThenClose(await exchange(server.port, valid.subarray(0, 4), true), 1);
    expectErrorFrameThenClose(await exchange(server.port, downloadPiece("../../../../../../../../etc/passwd".padEnd(64, "/"), 0), false), 1);
    const unknownTag = Buffer.from(valid);
    unknownTag[1] = 42;
    expectErrorFrameThenClose(await exchange(server.port, unknownTag, false), 1);
    // A well-formed request still works afterwards.
    const ok = await exchange(server.port, Buffer.concat([valid, Buffer.from([0, 254, 0, 0, 0, 0])]), false);
    expect(ok[1]).toBe(1);
    const metaLen = ok.readUInt32BE(2);
    expect(ok.subarray(6 + metaLen).equals(slice(0))).toBe(true);
  });

  it("stops a stalled download when the AbortSignal fires, and fails a silent parent as DF_STALLED within its deadline", async () => {
    const held: Socket[] = [];
    const silent: Server = createServer((s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as { port: number }).port;
    const dst = mkdtempSync(join(tmpdir(), "df-dst-"));
    try {
      const store = openTaskStore({ dataDir: dst, taskId: TASK, contentLength: CONTENT, pieceLength: PIECE });
      const ac = new AbortController();
      const p = store.fetchPiece({ addr: `127.0.0.1:${port}`, number: 0 }, ac.signal);
      setTimeout(() => ac.abort(), 50);
      expect(await codeOf(p)).toBe("DF_ABORTED");
      // The native side dropped its socket: the silent parent sees the connection close.
      await new Promise<void>((resolve) => {
        const check = (): void => {
          if (held.length > 0 && held.every((s) => s.readableEnded || s.destroyed)) resolve();
          else setTimeout(check, 10);
        };
        held.forEach((s) => s.on("end", () => undefined).resume());
        check();
      });
      expect(await codeOf(store.fetchPiece({ addr: `127.0.0.1:${port}`, number: 0, pieceTimeoutMs: 100 }))).toBe("DF_TIMEOUT");
      // A parent that does not start answering within the first-byte deadline has stalled:
      // its own code, long before the piece timeout, in a race too (the candidate is listed).
      const started = Date.now();
      expect(await codeOf(store.fetchPiece({ addr: `127.0.0.1:${port}`, number: 0, pieceTimeoutMs: 60_000, firstByteTimeoutMs: 150, stallTimeoutMs: 100 }))).toBe("DF_STALLED");
      expect(Date.now() - started).toBeLessThan(5000);
      const race = store.race(60_000);
      race.add({ addr: `127.0.0.1:${port}`, number: 0, firstByteTimeoutMs: 150 });
      expect(await codeOf(race.done)).toBe("DF_STALLED");
      expect(await race.started).toBe(-1);
      expect(race.stalled()).toEqual([0]);
      expect(store.finishedCount()).toBe(0);
      expect(readFileSync(store.info().contentPath).length).toBe(CONTENT);
    } finally {
      held.forEach((s) => s.destroy());
      silent.close();
      rmSync(dst, { recursive: true, force: true });
    }
  });
});
