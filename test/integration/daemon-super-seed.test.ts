// Seed peer super-seeding through the real upload service: two children subscribed with
// SyncPieces while the seed peer fetches from the origin; each piece that lands is reported to
// one of them only (the children take turns) until the hold ends, so the seed peer's upload is
// not split over the same bytes. Between landings, the streams' periodic pass still reports a
// piece stored without a landing event and hands a child's held pieces on when it leaves.
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { credentials, type ClientReadableStream } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import type { TaskStore } from "../../src/daemon/storage/types.js";
import { DfdaemonUploadClient, type SyncPiecesResponse } from "../../src/gen/dfdaemon/v2/dfdaemon.js";
import { makeContent } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, startTestDaemon, tempDir } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const MiB = 1024 * 1024;
const content = makeContent(3 * 4 * MiB, 9);

let origin: Server;
let openGate: () => void;
const gate = new Promise<void>((resolve) => (openGate = resolve));
let seed: DaemonHandle;
let client: InstanceType<typeof DfdaemonUploadClient>;

beforeAll(async () => {
  // Answers the length probe at once and holds every piece until the children subscribed.
  origin = createServer((req, res) => {
    const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? "");
    const [a, b] = m ? [Number(m[1]), Number(m[2])] : [0, content.length - 1];
    const reply = () => {
      res.writeHead(m ? 206 : 200, { "content-length": b - a + 1, "accept-ranges": "bytes", ...(m ? { "content-range": `bytes ${a}-${b}/${content.length}` } : {}) });
      res.end(req.method === "HEAD" ? undefined : content.subarray(a, b + 1));
    };
    if (req.method === "HEAD" || b - a < 1) reply();
    else void gate.then(reply);
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  seed = await startTestDaemon({ name: "superseed", schedulers: [], seed: true, overrides: { seedPeer: { enable: true, spreadHold: "60s" } } });
  client = new DfdaemonUploadClient(`127.0.0.1:${seed.uploadPort}`, credentials.createInsecure());
});

afterAll(async () => {
  client.close();
  await seed.close();
  await new Promise<void>((resolve) => origin.close(() => resolve()));
  cleanupTempDirs();
});

function subscribe(taskId: string, hostId: string, interestedPieceNumbers = [0, 1, 2]): { pieces: number[]; stream: ClientReadableStream<SyncPiecesResponse> } {
  const pieces: number[] = [];
  const stream = client.syncPieces({ hostId, taskId, interestedPieceNumbers });
  stream.on("data", (r: SyncPiecesResponse) => pieces.push(r.number));
  stream.on("error", () => undefined);
  return { pieces, stream };
}

describe("seed peer super-seeding", () => {
  it("reports each fresh piece to one subscribed child at a time", async () => {
    const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}/layer.bin`;
    const download = downloadVia(seed.socketPath, { url, outputPath: join(tempDir("superseed-out"), "f") });
    let taskId: string | undefined;
    while (!(taskId = seed.storage.list()[0]?.id)) await new Promise((r) => setTimeout(r, 10));
    // Each SyncPieces stream listens for the task's pieces: wait until both are registered.
    const event = `piece:${taskId}`;
    const before = seed.tasks.events.listenerCount(event);
    const a = subscribe(taskId, "child-a");
    const b = subscribe(taskId, "child-b");
    while (seed.tasks.events.listenerCount(event) < before + 2) await new Promise((r) => setTimeout(r, 10));
    openGate();
    await download;
    while (a.pieces.length + b.pieces.length < 3) await new Promise((r) => setTimeout(r, 10));
    expect([...a.pieces, ...b.pieces].sort()).toEqual([0, 1, 2]);
    expect(a.pieces.length).toBeGreaterThan(0);
    expect(b.pieces.length).toBeGreaterThan(0);
    a.stream.cancel();
    b.stream.cancel();
  });
});

describe("SyncPieces streams between landings", () => {
  const PIECE = 4 * MiB;
  const data = makeContent(2 * PIECE, 11);

  async function openTask(name: string): Promise<TaskStore> {
    const id = createHash("sha256").update(name).digest("hex");
    return seed.storage.open({ id, url: `http://127.0.0.1:9/${name}`, filteredQueryParams: [], requestHeader: {}, contentLength: data.length, pieceLength: PIECE, pieceCount: 2, responseHeader: {}, tier: "disk" });
  }

  it("reports a piece stored without a landing event (the periodic pass lists the store again)", async () => {
    const task = await openTask("quiet.bin");
    const c = subscribe(task.id, "child-c", [0, 1]);
    const ended = new Promise<void>((resolve) => c.stream.on("end", resolve));
    await task.writePiece(1, data.subarray(PIECE), Date.now());
    await until(() => c.pieces.includes(1), "the report of piece 1");
    await task.writePiece(0, data.subarray(0, PIECE), Date.now());
    await ended;
    expect(c.pieces.sort()).toEqual([0, 1]);
  });

  it("hands the pieces held for a child that left to the children still subscribed", async () => {
    const task = await openTask("held.bin");
    const event = `piece:${task.id}`;
    const before = seed.tasks.events.listenerCount(event);
    const a = subscribe(task.id, "child-a2", [0, 1]);
    const b = subscribe(task.id, "child-b2", [0, 1]);
    await until(() => seed.tasks.events.listenerCount(event) >= before + 2, "both streams to listen");
    for (const n of [0, 1]) {
      const info = await task.writePiece(n, data.subarray(n * PIECE, (n + 1) * PIECE), Date.now());
      seed.tasks.events.emit(event, task, info);
    }
    // A 60 s hold gives each piece to one child; the other hears of it only when that one leaves.
    await until(() => a.pieces.length + b.pieces.length === 2, "each piece to be reported once");
    const [gone, stays] = a.pieces.length > 0 ? [a, b] : [b, a];
    const heldFor = [...gone.pieces];
    gone.stream.cancel();
    await until(() => heldFor.every((n) => stays.pieces.includes(n)), "the held pieces to reach the child that stayed");
    expect(stays.pieces.sort()).toEqual([0, 1]);
    stays.stream.cancel();
  });
});
