// The native piece server and client over QUIC through the facade: a server started with a
// `quicPort` answers vortex on QUIC streams with the same admission as over TCP, and a fetch
// or a race with `protocol: "quic"` goes there.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTaskStore, startPieceServer, type NativeTaskStore, type PieceServer } from "../../src/native/index.js";
import { codeOf, pattern } from "../helpers/native.js";

const TASK = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const PIECE = 256 * 1024;
const CONTENT = PIECE * 4 + 321;
/** The last one a short piece. */
const PIECES = 5;

const DATA = pattern(CONTENT, 2246822519, 11);
const slice = (n: number): Buffer => DATA.subarray(n * PIECE, Math.min(CONTENT, (n + 1) * PIECE));

describe("native vortex over QUIC", () => {
  let src: string;
  let server: PieceServer;
  let srcStore: NativeTaskStore;
  const dirs: string[] = [];
  const childStore = (): NativeTaskStore => {
    const d = mkdtempSync(join(tmpdir(), "df-quic-dst-"));
    dirs.push(d);
    return openTaskStore({ dataDir: d, taskId: TASK, contentLength: CONTENT, pieceLength: PIECE });
  };

  beforeAll(async () => {
    src = mkdtempSync(join(tmpdir(), "df-quic-src-"));
    srcStore = openTaskStore({ dataDir: src, taskId: TASK, contentLength: CONTENT, pieceLength: PIECE });
    for (let n = 0; n < PIECES; n++) await srcStore.writePiece(n, slice(n));
    server = await startPieceServer({ host: "127.0.0.1", port: 0, dataDir: src, quicPort: 0 });
  });
  afterAll(async () => {
    await server.close();
    for (const d of [src, ...dirs]) rmSync(d, { recursive: true, force: true });
  });

  it("starts without QUIC unless asked", async () => {
    const s = await startPieceServer({ host: "127.0.0.1", port: 0, dataDir: src });
    expect(s.quicPort).toBeUndefined();
    await s.close();
    const off = await startPieceServer({ host: "127.0.0.1", port: 0, dataDir: src, quicPort: -1 });
    expect(off.quicPort).toBeUndefined();
    await off.close();
  });

  it("moves verified pieces parent → child over QUIC and counts them as QUIC", async () => {
    expect(server.quicPort).toBeGreaterThan(0);
    const before = server.stats();
    const store = childStore();
    for (let n = 0; n < PIECES; n++) {
      const info = await store.fetchPiece({ addr: `127.0.0.1:${server.quicPort}`, protocol: "quic", number: n, parentId: "parent" });
      expect(info.digest).toBe(srcStore.piece(n)?.digest);
    }
    expect(readFileSync(store.info().contentPath).subarray(0, CONTENT).equals(DATA)).toBe(true);
    const after = server.stats();
    expect(after.quicPiecesServed - before.quicPiecesServed).toBe(PIECES);
    expect(after.quicBytesServed - before.quicBytesServed).toBe(CONTENT);
    expect(after.connectionsAccepted).toBe(before.connectionsAccepted);
  });

  it("reports a piece the parent does not have as DF_NOT_FOUND over QUIC", async () => {
    const other = openTaskStore({ dataDir: src, taskId: "f".repeat(64), contentLength: CONTENT, pieceLength: PIECE });
    expect(await codeOf(other.fetchPiece({ addr: `127.0.0.1:${server.quicPort}`, protocol: "quic", number: 0 }))).toBe("DF_NOT_FOUND");
    other.delete();
  });

  it("races over QUIC", async () => {
    const store = childStore();
    const race = store.race(10_000);
    race.add({ addr: `127.0.0.1:${server.quicPort}`, protocol: "quic", number: 2, parentId: "parent" });
    const won = await race.done;
    expect(won.index).toBe(0);
    expect(won.info.number).toBe(2);
    expect(await race.started).toBe(0);
  });

  it("refuses a QUIC request beyond the upload slots that a TCP request holds as DF_BUSY", async () => {
    const busy = await startPieceServer({ host: "127.0.0.1", port: 0, dataDir: src, quicPort: 0, uploadSlots: 1, uploadQueue: 0, rateLimitBytesPerSec: 256 * 1024 });
    try {
      const sending = childStore().fetchPiece({ addr: `127.0.0.1:${busy.port}`, number: 0 });
      while (busy.stats().bytesServed === 0) await new Promise((r) => setTimeout(r, 5));
      expect(await codeOf(childStore().fetchPiece({ addr: `127.0.0.1:${busy.quicPort}`, protocol: "quic", number: 1 }))).toBe("DF_BUSY");
      await sending;
      await childStore().fetchPiece({ addr: `127.0.0.1:${busy.quicPort}`, protocol: "quic", number: 1 });
      expect(busy.stats().quicPiecesServed).toBe(1);
    } finally {
      await busy.close();
    }
  });

  it("refuses an unknown protocol", async () => {
    expect(await codeOf(childStore().fetchPiece({ addr: `127.0.0.1:${server.port}`, protocol: "udp" as "quic", number: 0 }))).toBe("DF_INVALID_ARGUMENT");
  });
});
