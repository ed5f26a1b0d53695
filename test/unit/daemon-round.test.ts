// PieceRound.addParents: parents named while a round runs join it with their own SyncPieces
// and SyncHost streams (for the pieces still missing); known parents are not opened twice.
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { Peer } from "../../src/gen/common/v2/common.js";
import type { SyncHostRequest, SyncPiecesRequest } from "../../src/gen/dfdaemon/v2/dfdaemon.js";
import type { UploadClientPool } from "../../src/daemon/piece/parents.js";
import { PieceRound, type Holder } from "../../src/daemon/piece/round.js";

class FakeStream extends EventEmitter {
  cancelled = false;
  cancel(): void {
    this.cancelled = true;
  }
}

/** One fake upload service per ip: records the streams opened to it. */
class FakeUploads {
  readonly pieces = new Map<string, Array<{ req: SyncPiecesRequest; stream: FakeStream }>>();
  readonly hosts = new Map<string, SyncHostRequest[]>();
  get(ip: string) {
    return {
      syncPieces: (req: SyncPiecesRequest) => {
        const stream = new FakeStream();
        this.pieces.set(ip, [...(this.pieces.get(ip) ?? []), { req, stream }]);
        return stream;
      },
      syncHost: (req: SyncHostRequest) => {
        this.hosts.set(ip, [...(this.hosts.get(ip) ?? []), req]);
        return new FakeStream();
      },
    };
  }
}

const parent = (id: string, ip: string, type = 0) => Peer.fromPartial({ id, host: { id: `host-${id}`, ip, port: 4000, type } });
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

type Fetch = (h: Holder, n: number) => Promise<{ number: number; offset: number; length: number; digest: string; parentId: string; createdAt: number; finishedAt: number }>;

function newRound(uploads: FakeUploads, candidates: Peer[], missing: Set<number>, opts: { concurrency?: number; fetch?: Fetch } = {}) {
  const fetched: Array<{ n: number; from: string }> = [];
  const round = new PieceRound(
    {
      taskId: "t".repeat(64),
      hostId: "me",
      peerId: "me-peer",
      concurrency: opts.concurrency ?? 2,
      idleTimeoutMs: 60_000,
      uploadClients: uploads as unknown as UploadClientPool,
      fetch: (h: Holder, n: number) => {
        fetched.push({ n, from: h.peerId });
        if (opts.fetch) return opts.fetch(h, n);
        return Promise.resolve({ number: n, offset: n * 4, length: 4, digest: "crc32:0", parentId: h.peerId, createdAt: 0, finishedAt: 0 });
      },
      onPiece: () => undefined,
      onPieceFailed: () => undefined,
      onBadParent: () => undefined,
      log: silentLogger(),
    },
    candidates,
    missing,
  );
  return { round, fetched };
}

describe("PieceRound.addParents", () => {
  it("opens streams to new parents only, for the pieces still missing, and fetches from them", async () => {
    const uploads = new FakeUploads();
    const { round, fetched } = newRound(uploads, [parent("seed", "10.0.0.1")], new Set([0, 1]));
    const done = round.run();
    await tick();
    const seedSync = uploads.pieces.get("10.0.0.1")?.[0];
    expect(seedSync?.req.interestedPieceNumbers).toEqual([0, 1]);
    seedSync?.stream.emit("data", { number: 0, ip: "10.0.0.1", tcpPort: 4001 });
    await tick();
    expect(fetched).toEqual([{ n: 0, from: "seed" }]);

    // The scheduler's top-up lists the known parent first, then the new one.
    expect(round.addParents([parent("seed", "10.0.0.1"), parent("b", "10.0.0.2")])).toBe(1);
    expect(uploads.pieces.get("10.0.0.1")).toHaveLength(1);
    expect(uploads.hosts.get("10.0.0.1")).toHaveLength(1);
    const bSync = uploads.pieces.get("10.0.0.2")?.[0];
    expect(bSync?.req.interestedPieceNumbers).toEqual([1]);
    expect(uploads.hosts.get("10.0.0.2")).toEqual([{ hostId: "me", peerId: "me-peer" }]);
    bSync?.stream.emit("data", { number: 1, ip: "10.0.0.2", tcpPort: 4001 });

    expect(await done).toBe(true);
    expect(fetched).toEqual([
      { n: 0, from: "seed" },
      { n: 1, from: "b" },
    ]);
    expect(seedSync?.stream.cancelled && bSync?.stream.cancelled).toBe(true);
    // A finished round takes no more parents.
    expect(round.addParents([parent("c", "10.0.0.3")])).toBe(0);
    expect(uploads.pieces.has("10.0.0.3")).toBe(false);
  });

  it("parents added before run() are synced when it starts; parents without an address are skipped", async () => {
    const uploads = new FakeUploads();
    const { round } = newRound(uploads, [], new Set([0]));
    expect(round.addParents([parent("a", "10.0.0.1"), Peer.fromPartial({ id: "no-host" })])).toBe(1);
    expect(uploads.pieces.size).toBe(0);
    const done = round.run();
    await tick();
    uploads.pieces.get("10.0.0.1")?.[0]?.stream.emit("data", { number: 0, ip: "10.0.0.1", tcpPort: 4001 });
    expect(await done).toBe(true);
  });
});

/** A fetch that stays in flight until the test lets it land. */
function heldFetch() {
  const waiting: Array<() => void> = [];
  const fetch: Fetch = (h, n) =>
    new Promise((resolve) => waiting.push(() => resolve({ number: n, offset: n * 4, length: 4, digest: "crc32:0", parentId: h.peerId, createdAt: 0, finishedAt: 0 })));
  return { fetch, releaseAll: () => waiting.splice(0).forEach((f) => f()) };
}

function report(uploads: FakeUploads, ip: string, pieces: number[]) {
  const s = uploads.pieces.get(ip)?.[0]?.stream;
  for (const n of pieces) s?.emit("data", { number: n, ip, tcpPort: 4001 });
}

describe("PieceRound piece and parent choice", () => {
  it("fetches the rarest piece first", async () => {
    const uploads = new FakeUploads();
    const held = heldFetch();
    const { round, fetched } = newRound(uploads, [parent("a", "10.0.0.1"), parent("b", "10.0.0.2")], new Set([0, 1, 2]), { concurrency: 1, fetch: held.fetch });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.2", [0, 1]);
    report(uploads, "10.0.0.1", [0, 1, 2]);
    await tick();
    // Piece 2 has one holder, 0 and 1 have two.
    expect(fetched[0]).toEqual({ n: 2, from: "a" });
    for (let i = 0; i < 3; i++) {
      held.releaseAll();
      await tick();
    }
    expect(await done).toBe(true);
    expect(fetched.map((f) => f.n).sort()).toEqual([0, 1, 2]);
  });

  it("asks the seed peer only for pieces no other parent holds", async () => {
    const uploads = new FakeUploads();
    const held = heldFetch();
    const { round, fetched } = newRound(uploads, [parent("seed", "10.0.0.1", 1), parent("b", "10.0.0.2")], new Set([0, 1]), { concurrency: 4, fetch: held.fetch });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0, 1]);
    report(uploads, "10.0.0.2", [0]);
    await tick();
    expect(fetched.sort((x, y) => x.n - y.n)).toEqual([
      { n: 0, from: "b" },
      { n: 1, from: "seed" },
    ]);
    held.releaseAll();
    expect(await done).toBe(true);
  });

  it("keeps at most two requests in flight to one parent", async () => {
    const uploads = new FakeUploads();
    const held = heldFetch();
    const { round, fetched } = newRound(uploads, [parent("a", "10.0.0.1")], new Set([0, 1, 2, 3, 4]), { concurrency: 4, fetch: held.fetch });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0, 1, 2, 3, 4]);
    await tick();
    expect(fetched).toHaveLength(2);
    for (let i = 0; i < 4; i++) {
      held.releaseAll();
      await tick();
    }
    expect(await done).toBe(true);
    expect(fetched).toHaveLength(5);
  });
});
