// PieceRound.addParents: parents named while a round runs join it with their own SyncPieces
// and SyncHost streams (for the pieces still missing); known parents are not opened twice.
import { EventEmitter } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { Peer } from "../../src/gen/common/v2/common.js";
import type { SyncHostRequest, SyncPiecesRequest } from "../../src/gen/dfdaemon/v2/dfdaemon.js";
import type { UploadClientPool } from "../../src/daemon/piece/parents.js";
import { MIN_FIRST_BYTE_MS, MIN_STALL_MS, pieceDeadlines, PieceRound, type Holder, type ParentRace } from "../../src/daemon/piece/round.js";
import type { PieceDeadlines } from "../../src/daemon/storage/types.js";
import type { Vouched } from "../../src/daemon/piece/vouched.js";

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

const parent = (id: string, ip: string, type = 0, needBackToSource = false) => Peer.fromPartial({ id, host: { id: `host-${id}`, ip, port: 4000, type }, needBackToSource });
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

type Fetch = (h: Holder, n: number) => Promise<{ number: number; offset: number; length: number; digest: string; parentId: string; createdAt: number; finishedAt: number }>;

/** What a parent delivers for piece `n` of the fake 4-byte-piece task. */
const piece = (h: Holder, n: number) => ({ number: n, offset: n * 4, length: 4, digest: "crc32:0", parentId: h.peerId, createdAt: 0, finishedAt: 0 });

function newRound(uploads: FakeUploads, candidates: Peer[], missing: Set<number>, opts: { concurrency?: number; fetch?: Fetch; now?: () => number; race?: () => ParentRace; idleTimeoutMs?: number; stalls?: Map<string, number>; admit?: (peer: Peer) => Promise<boolean>; vouched?: Vouched } = {}) {
  const fetched: Array<{ n: number; from: string; deadlines?: PieceDeadlines; expected?: string | undefined }> = [];
  const failed: number[] = [];
  const bad: string[] = [];
  const round = new PieceRound(
    {
      taskId: "t".repeat(64),
      hostId: "me",
      peerId: "me-peer",
      concurrency: opts.concurrency ?? 2,
      idleTimeoutMs: opts.idleTimeoutMs ?? 60_000,
      pieceLength: 4,
      pieceTimeoutMs: 120_000,
      uploadClients: uploads as unknown as UploadClientPool,
      fetch: (h: Holder, n: number, deadlines: PieceDeadlines, expected?: string) => {
        fetched.push({ n, from: h.peerId, ...(opts.stalls ? { deadlines } : {}), ...(opts.vouched ? { expected } : {}) });
        if (opts.fetch) return opts.fetch(h, n);
        return Promise.resolve(piece(h, n));
      },
      onPiece: () => undefined,
      onPieceFailed: (n: number) => failed.push(n),
      onBadParent: (h: Holder) => bad.push(h.peerId),
      log: silentLogger(),
      ...(opts.stalls ? { stalls: opts.stalls } : {}),
      ...(opts.admit ? { admit: opts.admit } : {}),
      ...(opts.now ? { now: opts.now } : {}),
      ...(opts.race ? { race: opts.race } : {}),
      ...(opts.vouched ? { vouched: opts.vouched } : {}),
    },
    candidates,
    missing,
  );
  return { round, fetched, failed, bad };
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
    new Promise((resolve) => waiting.push(() => resolve(piece(h, n))));
  return { fetch, releaseAll: () => waiting.splice(0).forEach((f) => f()) };
}

function report(uploads: FakeUploads, ip: string, pieces: number[]) {
  const s = uploads.pieces.get(ip)?.[0]?.stream;
  for (const n of pieces) s?.emit("data", { number: n, ip, tcpPort: 4001 });
}

describe("PieceRound admission (the task's content version, #20)", () => {
  it("asks once per parent after its first report, holds its reports meanwhile, and never fetches from a refused one", async () => {
    const uploads = new FakeUploads();
    const asked: string[] = [];
    const answers = new Map<string, (ok: boolean) => void>();
    const admit = (peer: Peer) => {
      asked.push(peer.id);
      return new Promise<boolean>((resolve) => answers.set(peer.id, resolve));
    };
    const { round, fetched } = newRound(uploads, [parent("same", "10.0.0.1"), parent("other", "10.0.0.2")], new Set([0, 1]), { admit });
    const done = round.run();
    await tick();
    expect(asked).toEqual([]);
    const same = uploads.pieces.get("10.0.0.1")?.[0]?.stream;
    const other = uploads.pieces.get("10.0.0.2")?.[0]?.stream;
    other?.emit("data", { number: 0, ip: "10.0.0.2", tcpPort: 4001 });
    other?.emit("data", { number: 1, ip: "10.0.0.2", tcpPort: 4001 });
    same?.emit("data", { number: 0, ip: "10.0.0.1", tcpPort: 4001 });
    other?.emit("end");
    await tick();
    expect(asked).toEqual(["other", "same"]);
    expect(fetched).toEqual([]);
    answers.get("other")?.(false);
    await tick();
    expect(fetched).toEqual([]);
    answers.get("same")?.(true);
    await tick();
    same?.emit("data", { number: 1, ip: "10.0.0.1", tcpPort: 4001 });
    expect(await done).toBe(true);
    expect(fetched.map((f) => f.from)).toEqual(["same", "same"]);
    expect(asked).toEqual(["other", "same"]);
  });

  it("does not end the round while a parent's answer is pending", async () => {
    const uploads = new FakeUploads();
    let answer!: (ok: boolean) => void;
    const { round, fetched } = newRound(uploads, [parent("p", "10.0.0.1")], new Set([0]), { admit: () => new Promise<boolean>((r) => (answer = r)) });
    const done = round.run();
    await tick();
    const s = uploads.pieces.get("10.0.0.1")?.[0]?.stream;
    s?.emit("data", { number: 0, ip: "10.0.0.1", tcpPort: 4001 });
    s?.emit("end");
    await new Promise((r) => setTimeout(r, 250));
    expect(round.waitingWorkers).toBeGreaterThan(0);
    answer(true);
    expect(await done).toBe(true);
    expect(fetched).toEqual([{ n: 0, from: "p" }]);
  });
});


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

  it("tries every parent once, then sends pieces to the one that delivered fastest", async () => {
    const uploads = new FakeUploads();
    let clock = 0;
    // a takes 1000 ms a piece (a crowded parent), b 10 ms.
    const fetch: Fetch = (h, n) => {
      clock += h.peerId === "a" ? 1000 : 10;
      return Promise.resolve(piece(h, n));
    };
    const { round, fetched } = newRound(uploads, [parent("a", "10.0.0.1"), parent("b", "10.0.0.2")], new Set([0, 1, 2, 3, 4, 5]), { concurrency: 1, fetch, now: () => clock });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0, 1, 2, 3, 4, 5]);
    report(uploads, "10.0.0.2", [0, 1, 2, 3, 4, 5]);
    expect(await done).toBe(true);
    expect(new Set(fetched.slice(0, 2).map((f) => f.from))).toEqual(new Set(["a", "b"]));
    expect(fetched.slice(2).map((f) => f.from)).toEqual(["b", "b", "b", "b"]);
  });

  it("takes a busy refusal as no failure: another holder serves, or the piece waits for a slot", async () => {
    const uploads = new FakeUploads();
    let clock = 0;
    let refusals = 0;
    const fetch: Fetch = (h, n) => {
      // a refuses its first two requests as busy, as a piece server with every slot taken does.
      if (h.peerId === "a" && refusals < 2) {
        refusals++;
        return Promise.reject(Object.assign(new Error("upload busy"), { code: "DF_BUSY" }));
      }
      return Promise.resolve(piece(h, n));
    };
    const { round, fetched, failed } = newRound(uploads, [parent("a", "10.0.0.1"), parent("b", "10.0.0.2")], new Set([0, 1]), { concurrency: 1, fetch, now: () => clock });
    const done = round.run();
    await tick();
    // Piece 1 only at a: refused, then left alone while a is busy.
    report(uploads, "10.0.0.1", [1]);
    await tick();
    expect(fetched).toEqual([{ n: 1, from: "a" }]);
    report(uploads, "10.0.0.1", [0]);
    report(uploads, "10.0.0.2", [0]);
    await tick();
    // Piece 0: a is still backing off, so b serves it without asking a.
    expect(fetched.slice(1)).toEqual([{ n: 0, from: "b" }]);
    // Once a back-off is over, piece 1 is asked of a again (refused once more, then served).
    let finished = false;
    void done.then(() => (finished = true));
    while (!finished) {
      clock += 1000;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await done).toBe(true);
    expect(fetched.filter((f) => f.n === 1).map((f) => f.from)).toEqual(["a", "a", "a"]);
    expect(failed).toEqual([]);
  });

  // Among many parents a parent gets two of our requests at most; with few, more (up to six),
  // so our workers are not idle while they have pieces for us.
  it.each([
    { parents: 4, inFlight: 2 },
    { parents: 2, inFlight: 4 },
    { parents: 1, inFlight: 6 },
  ])("with $parents parent(s), keeps at most $inFlight requests in flight to one parent", async ({ parents, inFlight }) => {
    const uploads = new FakeUploads();
    const held = heldFetch();
    const candidates = Array.from({ length: parents }, (_, i) => parent(String.fromCharCode(97 + i), `10.0.0.${i + 1}`));
    const pieces = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    const { round, fetched } = newRound(uploads, candidates, new Set(pieces), { concurrency: 8, fetch: held.fetch });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", pieces);
    await tick();
    expect(fetched).toHaveLength(inFlight);
    for (let i = 0; i < pieces.length; i++) {
      held.releaseAll();
      await tick();
    }
    expect(await done).toBe(true);
    expect(fetched).toHaveLength(pieces.length);
  });
});

/** Races the test drives: which candidates each got, and a parent starting or failing. */
class FakeRaces {
  readonly races: Array<{ asked: Array<{ from: string; n: number }>; deadlines: PieceDeadlines[]; start(from: string): void; begin(from: string): void; land(): void; fail(from: string | undefined, e: Error): void; stall(from: string): void }> = [];
  readonly race = (): ParentRace => {
    const asked: Array<{ holder: Holder; number: number; deadlines: PieceDeadlines }> = [];
    const stalled: number[] = [];
    let started!: (i: number) => void;
    let settle!: { resolve: (w: { index: number; info: ReturnType<typeof piece> }) => void; reject: (e: Error) => void };
    const r = {
      add: (holder: Holder, number: number, deadlines: PieceDeadlines) => void asked.push({ holder, number, deadlines }),
      started: new Promise<number>((resolve) => (started = resolve)),
      done: new Promise<{ index: number; info: ReturnType<typeof piece> }>((resolve, reject) => (settle = { resolve, reject })),
      stalled: () => [...stalled],
    };
    const index = (from: string) => asked.findIndex((a) => a.holder.peerId === from);
    let winner = -1;
    // `from` starts sending (the race has a winner); its piece lands on `land`.
    const begin = (from: string) => {
      winner = index(from);
      started(winner);
    };
    const land = () => settle.resolve({ index: winner, info: piece(asked[winner]!.holder, asked[winner]!.number) });
    this.races.push({
      get asked() {
        return asked.map((a) => ({ from: a.holder.peerId, n: a.number }));
      },
      get deadlines() {
        return asked.map((a) => a.deadlines);
      },
      // `from` missed its first-byte deadline: it drops out of the race (DF_STALLED).
      stall: (from) => void stalled.push(index(from)),
      start: (from) => {
        begin(from);
        land();
      },
      begin,
      land,
      fail: (from, e) => {
        started(from === undefined ? -1 : index(from));
        settle.reject(e);
      },
    });
    return r;
  };
}

describe("PieceRound races", () => {
  it("asks every parent at once for the rarest piece it holds and takes the first to send", async () => {
    const uploads = new FakeUploads();
    const races = new FakeRaces();
    const { round, fetched } = newRound(uploads, [parent("a", "10.0.0.1"), parent("b", "10.0.0.2"), parent("c", "10.0.0.3")], new Set([0, 1]), { concurrency: 4, race: races.race });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0]);
    await tick();
    // a's report starts a race; c reporting while it waits joins it.
    expect(races.races).toHaveLength(1);
    report(uploads, "10.0.0.2", [1, 0]);
    report(uploads, "10.0.0.3", [1, 0]);
    expect(races.races[0]?.asked).toEqual([
      { from: "a", n: 0 },
      { from: "b", n: 1 },
      { from: "c", n: 1 },
    ]);
    races.races[0]?.start("c");
    await tick();
    await tick();
    // One piece at a time: the next race starts once this one landed (no transfer time known yet).
    expect(races.races).toHaveLength(2);
    expect(races.races[1]?.asked.map((a) => a.n)).toEqual([0, 0, 0]);
    races.races[1]?.start("a");
    expect(await done).toBe(true);
    expect(fetched).toEqual([]);
    expect(races.races).toHaveLength(2);
  });

  it("blocks a parent whose piece fails verification and takes the piece from another", async () => {
    const uploads = new FakeUploads();
    const races = new FakeRaces();
    const { round, bad } = newRound(uploads, [parent("a", "10.0.0.1"), parent("b", "10.0.0.2")], new Set([0]), { race: races.race });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0]);
    report(uploads, "10.0.0.2", [0]);
    await tick();
    races.races[0]?.fail("a", Object.assign(new Error("digest mismatch"), { code: "DF_DIGEST_MISMATCH" }));
    await tick();
    await tick();
    expect(bad).toEqual(["a"]);
    expect(races.races[1]?.asked).toEqual([{ from: "b", n: 0 }]);
    races.races[1]?.start("b");
    expect(await done).toBe(true);
  });

  /** A round over parent "a" holding pieces 0–5, with the clock the test moves. */
  async function overlapRound() {
    const uploads = new FakeUploads();
    const races = new FakeRaces();
    const clock = { now: 0 };
    const { round } = newRound(uploads, [parent("a", "10.0.0.1")], new Set([0, 1, 2, 3, 4, 5]), { concurrency: 3, race: races.race, now: () => clock.now });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0, 1, 2, 3, 4, 5]);
    await tick();
    return { races: races.races, clock, done };
  }

  const settle = async () => {
    await tick();
    await tick();
  };

  /** Lands every race from `from` on, and those the round starts meanwhile, until it ends. */
  async function landAll(races: FakeRaces["races"], from: number, done: Promise<boolean>): Promise<boolean> {
    let ended = false;
    void done.then(() => (ended = true));
    for (let i = from; !ended; i++) {
      for (let k = 0; k < 50 && !races[i] && !ended; k++) await new Promise((r) => setTimeout(r, 20));
      if (ended) break;
      races[i]?.begin("a");
      races[i]?.land();
      await settle();
    }
    return done;
  }

  it("on a slow link, asks for the next piece only shortly before the running one lands", async () => {
    const { races, clock, done } = await overlapRound();
    races[0]?.begin("a");
    await settle();
    clock.now += 350; // a 350 ms transfer
    races[0]?.land();
    await settle();
    expect(races).toHaveLength(2);
    races[1]?.begin("a");
    await settle();
    clock.now += 290; // within the lead of its expected landing
    await new Promise((r) => setTimeout(r, 400));
    expect(races).toHaveLength(3);
    races[2]?.begin("a");
    await settle();
    // Two pieces arriving: no third, however late they are.
    clock.now += 1000;
    await new Promise((r) => setTimeout(r, 150));
    expect(races).toHaveLength(3);
    races[1]?.land();
    await new Promise((r) => setTimeout(r, 150));
    expect(races).toHaveLength(4);
    expect(await landAll(races, 2, done)).toBe(true);
  });

  it("when pieces land within the lead, starts a race as soon as every running one has started", async () => {
    const { races, done } = await overlapRound();
    races[0]?.begin("a");
    await settle();
    races[0]?.land(); // in no time
    await settle();
    races[1]?.begin("a");
    await settle();
    races[2]?.begin("a");
    await settle();
    // Races 1 and 2 are both still receiving: a third runs beside them, one per worker.
    expect(races).toHaveLength(4);
    races[3]?.begin("a");
    await settle();
    expect(races).toHaveLength(4);
    expect(await landAll(races, 1, done)).toBe(true);
  });

  it("leaves parents alone for a moment when none of them started", async () => {
    const uploads = new FakeUploads();
    const races = new FakeRaces();
    let clock = 0;
    const { round } = newRound(uploads, [parent("a", "10.0.0.1")], new Set([0]), { race: races.race, now: () => clock });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0]);
    await tick();
    races.races[0]?.fail(undefined, Object.assign(new Error("upload busy"), { code: "DF_BUSY" }));
    await new Promise((r) => setTimeout(r, 150));
    expect(races.races).toHaveLength(1);
    clock += 1000;
    await new Promise((r) => setTimeout(r, 150));
    expect(races.races).toHaveLength(2);
    races.races[1]?.start("a");
    expect(await done).toBe(true);
  });
});

describe("PieceRound idling", () => {
  afterEach(() => vi.useRealTimers());

  it("idles ten minutes without growing: one waiter per worker, and the first report still wakes it", async () => {
    vi.useFakeTimers();
    const uploads = new FakeUploads();
    const { round, fetched } = newRound(uploads, [parent("a", "10.0.0.1")], new Set([0]), { concurrency: 8, idleTimeoutMs: 3_600_000 });
    const done = round.run();
    // Every worker polls every 100 ms while no parent reports: 6,000 polls each.
    for (let minute = 0; minute < 10; minute++) {
      await vi.advanceTimersByTimeAsync(60_000);
      expect(round.waitingWorkers).toBeLessThanOrEqual(8);
    }
    expect(fetched).toEqual([]);
    report(uploads, "10.0.0.1", [0]);
    await vi.advanceTimersByTimeAsync(10);
    expect(await done).toBe(true);
    expect(fetched).toEqual([{ n: 0, from: "a" }]);
    expect(round.waitingWorkers).toBe(0);
  });
});

describe("PieceRound stalled parents", () => {
  const stalledError = () => Object.assign(new Error("parent sent nothing for 2000 ms"), { code: "DF_STALLED" });

  it("derives the deadlines from the piece time: 4x idle (at least 2 s), 16x to the first byte (at least 4 s), both at most the piece timeout", () => {
    // Loopback: a piece in 10 ms, the floors rule.
    expect(pieceDeadlines(10, 120_000, false)).toEqual({ pieceMs: 120_000, firstByteMs: MIN_FIRST_BYTE_MS, stallMs: MIN_STALL_MS });
    // 4 MiB at about 35 Mbit/s.
    expect(pieceDeadlines(1000, 120_000, false)).toEqual({ pieceMs: 120_000, firstByteMs: 16_000, stallMs: 4000 });
    // A very slow parent: never beyond download.pieceTimeout.
    expect(pieceDeadlines(100_000, 120_000, false)).toEqual({ pieceMs: 120_000, firstByteMs: 120_000, stallMs: 120_000 });
    // A parent that stalled before gets the idle deadline to answer, too.
    expect(pieceDeadlines(10, 120_000, true)).toEqual({ pieceMs: 120_000, firstByteMs: MIN_STALL_MS, stallMs: MIN_STALL_MS });
    expect(pieceDeadlines(1000, 120_000, true)).toEqual({ pieceMs: 120_000, firstByteMs: 4000, stallMs: 4000 });
  });

  it("sends each request with deadlines from the speed its parent delivered at", async () => {
    const uploads = new FakeUploads();
    let clock = 0;
    // a delivers a 4-byte piece in 1000 ms.
    const fetch: Fetch = (h, n) => {
      clock += 1000;
      return Promise.resolve(piece(h, n));
    };
    const { round, fetched } = newRound(uploads, [parent("a", "10.0.0.1")], new Set([0, 1]), { concurrency: 1, fetch, now: () => clock, stalls: new Map() });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0, 1]);
    expect(await done).toBe(true);
    // Unmeasured: a 4-byte piece at the assumed 10 Mbit/s is within the floors.
    expect(fetched[0]?.deadlines).toEqual({ pieceMs: 120_000, firstByteMs: MIN_FIRST_BYTE_MS, stallMs: MIN_STALL_MS });
    expect(fetched[1]?.deadlines).toEqual({ pieceMs: 120_000, firstByteMs: 16_000, stallMs: 4000 });
  });

  it("gives a piece whose parent stalled to another holder, and drops the parent the second time: cancels its streams and reports it", async () => {
    const uploads = new FakeUploads();
    const races = new FakeRaces();
    const stalls = new Map<string, number>();
    const { round, bad } = newRound(uploads, [parent("a", "10.0.0.1"), parent("seed", "10.0.0.2", 1)], new Set([0, 1, 2, 3]), { concurrency: 1, race: races.race, stalls });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0, 1, 2, 3]);
    report(uploads, "10.0.0.2", [0, 1, 2, 3]);
    await tick();
    // The seed peer is asked only for pieces no other parent holds: a alone is asked.
    const first = races.races[0]!;
    expect(first.asked.map((c) => c.from)).toEqual(["a"]);
    expect(first.deadlines[0]).toEqual({ pieceMs: 120_000, firstByteMs: MIN_FIRST_BYTE_MS, stallMs: MIN_STALL_MS });
    // a starts sending, then goes silent.
    first.fail("a", stalledError());
    await tick();
    await tick();
    expect(stalls.get("a")).toBe(1);
    expect(bad).toEqual([]);
    // Its piece goes to the seed peer; a, asked for another, now has only the idle deadline to answer.
    const second = races.races[1]!;
    const stalledPiece = first.asked[0]!.n;
    expect(second.asked).toContainEqual({ from: "seed", n: stalledPiece });
    const atA = second.asked.findIndex((c) => c.from === "a");
    expect(atA).toBeGreaterThanOrEqual(0);
    expect(second.deadlines[atA]).toEqual({ pieceMs: 120_000, firstByteMs: MIN_STALL_MS, stallMs: MIN_STALL_MS });
    // a never answers (its first-byte deadline passes) while the seed peer serves.
    second.stall("a");
    second.start("seed");
    await tick();
    await tick();
    expect(stalls.get("a")).toBe(2);
    expect(bad).toEqual(["a"]);
    expect(uploads.pieces.get("10.0.0.1")?.[0]?.stream.cancelled).toBe(true);
    expect(uploads.pieces.get("10.0.0.2")?.[0]?.stream.cancelled).toBe(false);
    // Everything else comes from the seed peer.
    for (let i = 2; ; i++) {
      for (let k = 0; k < 50 && !races.races[i]; k++) await new Promise((r) => setTimeout(r, 10));
      const r = races.races[i];
      if (!r) break;
      expect(r.asked.map((c) => c.from)).toEqual(["seed"]);
      r.start("seed");
      await tick();
    }
    expect(await done).toBe(true);
  });

  it("ends the round when the parent that stalled twice was the only one, so the task goes back to the scheduler", async () => {
    const uploads = new FakeUploads();
    const races = new FakeRaces();
    const { round, bad, failed } = newRound(uploads, [parent("a", "10.0.0.1")], new Set([0, 1]), { concurrency: 1, race: races.race, stalls: new Map() });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0, 1]);
    await tick();
    races.races[0]!.stall("a");
    races.races[0]!.fail(undefined, stalledError());
    for (let k = 0; k < 100 && !races.races[1]; k++) await new Promise((r) => setTimeout(r, 10));
    races.races[1]!.stall("a");
    races.races[1]!.fail(undefined, stalledError());
    // No parent left and its SyncPieces stream cancelled: the round ends with pieces missing.
    uploads.pieces.get("10.0.0.1")?.[0]?.stream.emit("error", new Error("cancelled"));
    expect(await done).toBe(false);
    expect(bad).toEqual(["a"]);
    expect(failed.length).toBeGreaterThan(0);
  });

  it("does not take back a parent dropped in an earlier round of the task", async () => {
    const uploads = new FakeUploads();
    const { round } = newRound(uploads, [parent("a", "10.0.0.1"), parent("b", "10.0.0.2")], new Set([0]), { stalls: new Map([["a", 2]]) });
    const done = round.run();
    await tick();
    expect(uploads.pieces.has("10.0.0.1")).toBe(false);
    report(uploads, "10.0.0.2", [0]);
    expect(await done).toBe(true);
  });
});

describe("PieceRound and our own storage faults", () => {
  it("asks again for a piece our disk failed to store (EIO), without blaming the parent that sent it", async () => {
    const uploads = new FakeUploads();
    let failures = 1;
    const fetch: Fetch = (h, n) => {
      if (n === 1 && failures-- > 0) return Promise.reject(Object.assign(new Error("write piece 1: Input/output error (os error 5)"), { code: "DF_DEVICE_IO" }));
      return Promise.resolve(piece(h, n));
    };
    const { round, fetched, failed, bad } = newRound(uploads, [parent("a", "10.0.0.1")], new Set([0, 1]), { concurrency: 1, fetch });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.1", [0, 1]);
    expect(await done).toBe(true);
    // The only parent is asked for piece 1 again at once: no retry pause, no failure reported.
    expect(fetched.filter((f) => f.n === 1)).toEqual([
      { n: 1, from: "a" },
      { n: 1, from: "a" },
    ]);
    expect(failed).toEqual([]);
    expect(bad).toEqual([]);
  });
});

/** The origin's digests as a test hands them out (vouched.ts without a scheduler). */
class FakeVouched implements Vouched {
  readonly digests = new Map<number, string>();
  wanted = 0;
  private readonly listeners = new Set<() => void>();
  get(n: number): string | undefined {
    return this.digests.get(n);
  }
  want(): void {
    this.wanted++;
  }
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  learn(n: number, digest: string): void {
    this.digests.set(n, digest);
    for (const fn of this.listeners) fn();
  }
}

describe("PieceRound with vouched digests (issue 21)", () => {
  it("checks every piece against the origin's digest, and takes a piece without one only from a parent that fetched it from the origin", async () => {
    const uploads = new FakeUploads();
    const vouched = new FakeVouched();
    vouched.digests.set(1, "blake3:11");
    const { round, fetched } = newRound(uploads, [parent("src", "10.0.0.1", 0, true), parent("b", "10.0.0.2")], new Set([0, 1, 2]), { vouched });
    const done = round.run();
    await tick();
    report(uploads, "10.0.0.2", [0, 1, 2]);
    report(uploads, "10.0.0.1", [2]);
    await new Promise((r) => setTimeout(r, 50));
    // Piece 1 from b, checked against its digest; piece 2 from the source, whose own report is
    // its digest; piece 0 waits: only b holds it and nothing vouches for b's bytes yet.
    expect([...fetched].sort((x, y) => x.n - y.n)).toEqual([
      { n: 1, from: "b", expected: "blake3:11" },
      { n: 2, from: "src", expected: undefined },
    ]);
    expect(vouched.wanted).toBeGreaterThan(0);
    vouched.learn(0, "blake3:00");
    expect(await done).toBe(true);
    expect(fetched[2]).toEqual({ n: 0, from: "b", expected: "blake3:00" });
  });
});
