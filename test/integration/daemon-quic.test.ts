// Vortex over QUIC between daemons (issue 19): a child set to `download.protocol: quic` gets
// every piece from its parent over QUIC (the parent's QUIC server counts them, its TCP server
// serves none of them), and a plain-TCP child of the same parent still works.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

// 16 pieces of 4 MiB.
const SIZE = 64 * 1024 * 1024;
const PIECES = 16;

const tcpPieces = (d: DaemonHandle): number => {
  const s = d.pieceServerStats();
  return s.piecesServed - s.quicPiecesServed;
};

describe("dfdaemon pieces over QUIC", () => {
  let origin: Origin;
  let scheduler: SchedulerHandle;
  let seed: DaemonHandle;
  let quicChild: DaemonHandle;
  let tcpChild: DaemonHandle;
  const out = tempDir("outputs-quic");

  beforeAll(async () => {
    origin = await startOrigin(makeContent(SIZE, 19));
    scheduler = await startTestScheduler();
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    seed = await startTestDaemon({ name: "seed-quic", schedulers: [addr], seed: true });
    quicChild = await startTestDaemon({
      name: "child-quic",
      schedulers: [addr],
      overrides: { download: { server: { socketPath: join(tempDir("sock-quic"), "dfdaemon.sock") }, collectedPieceTimeout: "10s", pieceTimeout: "30s", protocol: "quic" } },
    });
    tcpChild = await startTestDaemon({ name: "child-tcp", schedulers: [addr] });
  });

  afterAll(async () => {
    for (const d of [tcpChild, quicChild, seed]) await d?.close();
    await scheduler?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  it("serves QUIC on a UDP port of its own next to TCP", () => {
    expect(seed.quicPort).toBeGreaterThan(0);
    expect(tcpChild.quicPort).toBeGreaterThan(0);
  });

  it("a child set to download.protocol quic gets every piece over QUIC", async () => {
    const path = join(out, "quic");
    const r = await downloadVia(quicChild.socketPath, { url: origin.url(), outputPath: path });
    expect(r.contentLength).toBe(SIZE);
    expect(sha256File(path)).toBe(origin.sha256);
    // The seed peer fetched from the origin once; the child got everything from it, over QUIC.
    expect(origin.bytesServed).toBeLessThanOrEqual(1.1 * SIZE);
    const s = seed.pieceServerStats();
    expect(s.quicPiecesServed).toBeGreaterThanOrEqual(PIECES);
    expect(s.quicBytesServed).toBeGreaterThanOrEqual(SIZE);
    expect(s.quicConnectionsAccepted).toBeGreaterThanOrEqual(1);
    expect(tcpPieces(seed)).toBe(0);
  });

  it("a plain-TCP child of the same parents still gets its pieces over TCP", async () => {
    const quicBefore = seed.pieceServerStats().quicPiecesServed + quicChild.pieceServerStats().quicPiecesServed;
    const originBefore = origin.bytesServed;
    const path = join(out, "tcp");
    await downloadVia(tcpChild.socketPath, { url: origin.url(), outputPath: path });
    expect(sha256File(path)).toBe(origin.sha256);
    // No piece from the origin (the child probes its length, a byte or so).
    expect(origin.bytesServed - originBefore).toBeLessThan(1024);
    // From the seed peer, the QUIC child or both, but over TCP only.
    expect(tcpPieces(seed) + tcpPieces(quicChild)).toBeGreaterThanOrEqual(PIECES);
    expect(seed.pieceServerStats().quicPiecesServed + quicChild.pieceServerStats().quicPiecesServed).toBe(quicBefore);
  });
});
