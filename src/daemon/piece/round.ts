// One scheduling round of a P2P download: learn which pieces each candidate parent holds
// (SyncPieces, which keeps streaming as the parent's own download progresses), fetch the
// missing pieces, and stop when every piece landed or no parent can give us more. The caller
// reschedules then. Pieces are raced when the store can race (see `race`): one piece at a time,
// asked of every parent that could serve it, taken from whichever starts first. Otherwise each
// piece goes to the parent expected to deliver it first, `concurrency` pieces at a time.
import type { ClientReadableStream } from "@grpc/grpc-js";
import type { Host, Peer } from "../../gen/common/v2/common.js";
import type { SyncPiecesResponse } from "../../gen/dfdaemon/v2/dfdaemon.js";
import type { Logger } from "../../common/logger.js";
import { isNativeError } from "../../native/index.js";
import { HOST_TYPE } from "../host.js";
import type { PieceInfo } from "../storage/types.js";
import { pickWeighted, spareBandwidthWeight, type UploadClientPool } from "./parents.js";

export interface Holder {
  peerId: string;
  hostId: string;
  ip: string;
  tcpPort: number;
  /** The parent's vortex QUIC port; 0 when it announced none. */
  quicPort: number;
}

export interface RoundDeps {
  taskId: string;
  hostId: string;
  peerId: string;
  concurrency: number;
  /** Give up on the round when no parent reported or delivered anything for this long. */
  idleTimeoutMs: number;
  uploadClients: UploadClientPool;
  /** Fetches one piece from a parent into the task store, verified; throws on any failure. */
  fetch(holder: Holder, number: number): Promise<PieceInfo>;
  /** Starts a race among parents for a piece each (see PieceRound.race); unset = fetch only. */
  race?(): ParentRace;
  onPiece(info: PieceInfo, holder: Holder): void;
  /** Every parent holding `number` failed it in this round. */
  onPieceFailed(number: number, lastParent: Holder, error: unknown): void;
  /** A parent served bytes that failed verification: not to be used again for this task. */
  onBadParent(holder: Holder, error: unknown): void;
  log: Logger;
  /** Clock for parent speeds and busy back-offs (tests); Date.now by default. */
  now?: () => number;
}

/** One race: each candidate added asks one parent for one piece; the first to start sending wins. */
export interface ParentRace {
  /** Asks `holder` for piece `number` too; ignored once a parent started sending. */
  add(holder: Holder, number: number): void;
  /** The winner's index (in the order added) once its parent starts sending; -1 if none does. */
  readonly started: Promise<number>;
  /** The winner and its landed, verified piece; rejects when every candidate refused or failed. */
  readonly done: Promise<{ index: number; info: PieceInfo }>;
}

interface RaceState {
  asked: Array<{ holder: Holder; number: number }>;
  parents: Set<string>;
  pieces: Set<number>;
  /** When the winner started sending. */
  startedAt?: number;
  /** Index of the winner in `asked`, once the losers were let go. */
  winner?: number;
}

interface ParentState {
  peer: Peer;
  host: Host;
  weight: number;
  blocked: boolean;
  seed: boolean;
}

/** Rounds of retries of a piece whose holders all failed, and the pause before each. */
const PIECE_RETRIES = 3;
const PIECE_RETRY_DELAY_MS = 500;
/**
 * Our requests in flight to one parent. Two keep a parent's link busy (one piece streams while
 * the next is asked for); more would only split its upload into slower transfers that all land
 * late, which stalls everyone downstream of us who waits for those pieces. With fewer parents
 * than our workers can keep busy at two each (a task cached on one other host, a seed peer that
 * holds it all), the limit would only idle our workers: then up to PARENT_IN_FLIGHT_FEW, what a
 * piece server admits by default before it refuses as busy (3 sending + 3 waiting).
 */
const PARENT_IN_FLIGHT = 2;
const PARENT_IN_FLIGHT_FEW = 6;
/**
 * How fast a parent's speed estimate recovers when we stop asking it: a parent that was slow
 * because other children crowded it is worth another try after a while, and only a new piece
 * from it tells.
 */
const SPEED_RECOVERY_MS = 5000;

interface Speed {
  /** Bytes per millisecond of its recent pieces, moving average. */
  bytesPerMs: number;
  at: number;
}

/**
 * How long a parent that refused a piece as busy (all its upload slots sending) is left alone:
 * about the time a slot takes to free up on a modest link.
 */
const BUSY_BACKOFF_MS = 200;

/**
 * Parents one race asks at most; each waits as a connection in that parent's upload queue.
 * Above the scheduler's mesh of parents, so in practice every parent that could serve us.
 */
const RACE_WIDTH = 24;
/**
 * The next race starts this long before the running transfer is expected to end, so that our
 * requests already wait in the parents' queues when the piece lands: the few milliseconds from
 * one piece to asking for the next would otherwise idle our link once per piece.
 */
const RACE_LEAD_MS = 60;

export class PieceRound {
  private readonly holders = new Map<number, Holder[]>();
  private readonly tried = new Map<number, Set<string>>();
  /** Pieces with a holder, not in flight and not landed: what a worker may pick next. */
  private readonly queued = new Set<number>();
  /** Our requests in flight per parent, so one parent is not asked for everything at once. */
  private readonly load = new Map<string, number>();
  /** What each parent delivered to us lately, so pieces go to the parent expected to finish first. */
  private readonly speed = new Map<string, Speed>();
  /** Parents that refused us as busy, until when we leave them alone. */
  private readonly busyUntil = new Map<string, number>();
  private readonly fetching = new Set<number>();
  private readonly parents = new Map<string, ParentState>();
  private readonly streams: Array<ClientReadableStream<unknown>> = [];
  private readonly syncedHosts = new Set<string>();
  private readonly retries = new Map<number, number>();
  private perParent = PARENT_IN_FLIGHT;
  private readonly races = new Set<RaceState>();
  /** Moving average of a raced piece's transfer, from its first byte to landed. */
  private transferMs: number | undefined;
  /** Adds newly reported holders to the race still waiting for a parent. */
  private topUp: (() => void) | undefined;
  private running = false;
  private ended = false;
  private openSyncs = 0;
  private inFlight = 0;
  private lastProgress = Date.now();
  /** Workers waiting in idle(); each leaves the set when its timer fires or a notify wakes it. */
  private readonly waiting = new Set<() => void>();

  constructor(
    private readonly deps: RoundDeps,
    candidates: readonly Peer[],
    private readonly missing: Set<number>,
  ) {
    for (const peer of candidates) this.addParent(peer);
  }

  private addParent(peer: Peer): ParentState | undefined {
    if (!peer.host || !peer.host.ip || this.parents.has(peer.id)) return undefined;
    const p: ParentState = { peer, host: peer.host, weight: spareBandwidthWeight(peer.host.network?.maxTxBandwidth, peer.host.network?.txBandwidth), blocked: false, seed: peer.host.type !== HOST_TYPE.normal };
    this.parents.set(peer.id, p);
    this.parentsChanged();
    return p;
  }

  /** Runs until all missing pieces are fetched (true) or the round cannot progress (false). */
  async run(signal?: AbortSignal): Promise<boolean> {
    this.running = true;
    for (const p of this.parents.values()) this.sync(p);
    this.syncHosts();
    const workers = Array.from({ length: this.deps.concurrency }, () => this.worker(signal));
    try {
      await Promise.all(workers);
    } finally {
      this.ended = true;
      for (const s of this.streams) s.cancel();
    }
    return this.missing.size === 0;
  }

  /**
   * Parents the scheduler named while the round runs (it tops up a downloading peer as other
   * peers start serving): the ones we do not have yet join the round, with their own
   * SyncPieces (and SyncHost) streams. Returns how many joined; none once the round ended.
   */
  addParents(peers: readonly Peer[]): number {
    if (this.ended) return 0;
    let added = 0;
    for (const peer of peers) {
      const p = this.addParent(peer);
      if (!p) continue;
      added++;
      if (this.running) this.sync(p);
    }
    if (added > 0 && this.running) {
      this.lastProgress = Date.now();
      this.syncHosts();
    }
    return added;
  }

  private notify(): void {
    const woken = [...this.waiting];
    this.waiting.clear();
    for (const w of woken) w();
  }

  private sync(p: ParentState): void {
    const client = this.deps.uploadClients.get(p.host.ip, p.host.port);
    const stream = client.syncPieces({ hostId: this.deps.hostId, taskId: this.deps.taskId, interestedPieceNumbers: [...this.missing] });
    this.streams.push(stream);
    this.openSyncs++;
    stream.on("data", (r: SyncPiecesResponse) => {
      if (p.blocked || !this.missing.has(r.number)) return;
      const holder: Holder = { peerId: p.peer.id, hostId: p.host.id, ip: r.ip || p.host.ip, tcpPort: r.tcpPort ?? 0, quicPort: r.quicPort ?? 0 };
      if (!holder.tcpPort) return; // a parent that gives no piece port cannot serve bytes
      const list = this.holders.get(r.number) ?? [];
      list.push(holder);
      this.holders.set(r.number, list);
      this.lastProgress = Date.now();
      if (!this.fetching.has(r.number)) this.queued.add(r.number);
      this.topUp?.();
      this.notify();
    });
    const done = (e?: Error) => {
      if (e) this.deps.log.debug({ parent: p.peer.id, err: e.message }, "sync pieces stream ended with error");
      this.openSyncs--;
      this.notify();
    };
    let ended = false;
    stream.on("error", (e: Error) => {
      if (!ended) {
        ended = true;
        done(e);
      }
    });
    stream.on("end", () => {
      if (!ended) {
        ended = true;
        done();
      }
    });
  }

  /** Parents report their spare upload bandwidth about once a second (SyncHost). */
  private syncHosts(): void {
    const seen = this.syncedHosts;
    for (const p of this.parents.values()) {
      if (seen.has(p.host.id)) continue;
      seen.add(p.host.id);
      const stream = this.deps.uploadClients.get(p.host.ip, p.host.port).syncHost({ hostId: this.deps.hostId, peerId: this.deps.peerId });
      this.streams.push(stream);
      stream.on("data", (h: Host) => {
        const w = spareBandwidthWeight(h.network?.maxTxBandwidth, h.network?.txBandwidth);
        for (const q of this.parents.values()) if (q.host.id === p.host.id) q.weight = w;
      });
      stream.on("error", () => undefined);
    }
  }

  /**
   * Holders of piece `n` we may still ask in this round. A seed peer is asked only for pieces
   * no other parent holds: its upload is what brings new pieces into the swarm, and a copy it
   * sends of a piece peers already share is a new piece some other peer waits longer for.
   */
  private usable(n: number): Holder[] {
    const tried = this.tried.get(n);
    const all = (this.holders.get(n) ?? []).filter((h) => !tried?.has(h.peerId) && !this.parents.get(h.peerId)?.blocked);
    const peers = all.filter((h) => !this.parents.get(h.peerId)?.seed);
    return peers.length > 0 ? peers : all;
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  /** Recomputes the per-parent limit (see PARENT_IN_FLIGHT) when parents join or are blocked. */
  private parentsChanged(): void {
    const serving = [...this.parents.values()].filter((p) => !p.blocked).length;
    this.perParent = Math.max(PARENT_IN_FLIGHT, Math.min(PARENT_IN_FLIGHT_FEW, Math.ceil(this.deps.concurrency / Math.max(1, serving))));
  }

  private isBusy(h: Holder): boolean {
    return (this.busyUntil.get(h.peerId) ?? 0) > this.now();
  }

  private hasRoom(h: Holder): boolean {
    return (this.load.get(h.peerId) ?? 0) < this.perParent && !this.isBusy(h);
  }

  /**
   * Rarest first, ties at random: the piece the fewest of our parents hold, among those a parent
   * with room can serve. Peers that start together then ask for different pieces and have
   * something to trade, instead of all pulling pieces 0, 1, 2… from the seed peer; the seed
   * peer's upload, the scarcest link in the swarm, goes to pieces nobody else has yet.
   */
  private pick(random = Math.random): number | undefined {
    let best: number | undefined;
    let bestCount = Infinity;
    let ties = 0;
    for (const n of this.queued) {
      if (!this.missing.has(n)) {
        this.queued.delete(n);
        continue;
      }
      const holders = this.usable(n);
      if (!holders.some((h) => this.hasRoom(h))) continue;
      if (holders.length < bestCount) {
        best = n;
        bestCount = holders.length;
        ties = 1;
      } else if (holders.length === bestCount && random() * ++ties < 1) {
        best = n;
      }
    }
    if (best !== undefined) this.queued.delete(best);
    return best;
  }

  /**
   * The holder expected to deliver the piece first: our requests queued at it plus this one,
   * over the speed it gave us lately. Each child only sees its own requests, and a parent many
   * children crowd splits its upload among all of them, so what a parent actually delivered is
   * the one signal that steers us away from crowded parents to idle ones. Parents we have not
   * measured yet go first (that is how they get measured); equals are split by the spare
   * bandwidth they report.
   */
  private chooseParent(candidates: Holder[]): Holder | undefined {
    const roomy = candidates.filter((h) => this.hasRoom(h));
    const pool = roomy.length > 0 ? roomy : candidates.filter((h) => !this.isBusy(h));
    if (pool.length === 0) return undefined;
    const now = this.now();
    const expected = (h: Holder) => {
      const s = this.speed.get(h.peerId);
      if (!s) return 0;
      const recovered = s.bytesPerMs * 2 ** ((now - s.at) / SPEED_RECOVERY_MS);
      return ((this.load.get(h.peerId) ?? 0) + 1) / recovered;
    };
    const soonest = Math.min(...pool.map(expected));
    return pickWeighted(
      pool.filter((h) => expected(h) <= soonest * 1.1),
      (h) => this.parents.get(h.peerId)?.weight ?? 1,
    );
  }

  private measured(peerId: string, bytes: number, ms: number): void {
    const s = this.speed.get(peerId);
    // A failure halves the estimate (a zero would never recover).
    const sample = bytes > 0 ? bytes / Math.max(1, ms) : (s?.bytesPerMs ?? 1) / 2;
    this.speed.set(peerId, { bytesPerMs: s ? (s.bytesPerMs + sample) / 2 : sample, at: this.now() });
  }

  private async worker(signal?: AbortSignal): Promise<void> {
    for (;;) {
      if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error("download aborted");
      if (this.missing.size === 0) return this.notify();
      if (this.deps.race) {
        // Checked, picked and registered without an await in between, so that two workers
        // never start a race each on the same opening.
        const wait = this.raceWait();
        if (wait > 0) {
          await this.idle(wait);
          continue;
        }
        const candidates = this.raceCandidates();
        if (candidates.length > 0) {
          await this.race(candidates);
          continue;
        }
      }
      const n = this.deps.race ? undefined : this.pick();
      if (n === undefined) {
        // Nothing to fetch now: wait for a report, unless no parent can report anything more.
        if (this.openSyncs === 0 && this.inFlight === 0) return this.notify();
        if (Date.now() - this.lastProgress > this.deps.idleTimeoutMs && this.inFlight === 0) return this.notify();
        await this.idle(100);
        continue;
      }
      if (!this.missing.has(n)) continue;
      this.inFlight++;
      this.fetching.add(n);
      try {
        await this.fetchPiece(n);
      } finally {
        this.fetching.delete(n);
        this.inFlight--;
        this.notify();
      }
    }
  }

  /**
   * Waits `ms`, or less when a report, a landed piece or a started race wakes the workers. A
   * waiter whose timer fires leaves the set: at most one entry per worker, however long the
   * round idles (a chain of wrapped wake-ups grew by one closure every 100 ms of idling and
   * overflowed the stack when a notify finally unwound it).
   */
  private idle(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(t);
        this.waiting.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.waiting.add(wake);
    });
  }

  /** Workers waiting for something to happen (a test's window on idle()). */
  get waitingWorkers(): number {
    return this.waiting.size;
  }

  /**
   * Milliseconds until another race may start (0: now). Our link takes one piece at a time:
   * a second race only once the first one's parent is sending and its piece is about to land;
   * two pieces arriving side by side would each land at half speed, late for every child
   * waiting on them. A piece that lands within RACE_LEAD_MS (a fast link, a parent on this
   * host) is the exception: one at a time would leave the link idle while each piece is
   * verified and written, so then a race starts as soon as every running one has started,
   * up to one per worker (dfget-p2p-cached-1g: 0.67–0.90 s, median 0.77 s, against 0.80–0.94 s).
   */
  private raceWait(): number {
    if (this.races.size === 0) return 0;
    if (this.transferMs === undefined) return 100;
    if (this.races.size > 1 && this.transferMs >= RACE_LEAD_MS) return 100;
    let latest = -Infinity;
    for (const r of this.races) {
      if (r.startedAt === undefined) return 100;
      latest = Math.max(latest, r.startedAt);
    }
    return Math.max(0, latest + this.transferMs - RACE_LEAD_MS - this.now());
  }

  /**
   * For each parent with room (and not in `skip`), the rarest piece it can give us, rarest
   * first, at most RACE_WIDTH. Pieces already raced by this race (`mine`) may be asked of more
   * parents: the one that frees up first serves it.
   */
  private raceCandidates(skip?: ReadonlySet<string>, mine?: ReadonlySet<number>): Array<{ holder: Holder; number: number }> {
    const best = new Map<string, { holder: Holder; number: number; count: number; ties: number }>();
    const consider = (n: number) => {
      if (!this.missing.has(n) || (this.fetching.has(n) && !mine?.has(n))) return;
      const holders = this.usable(n);
      for (const h of holders) {
        if (skip?.has(h.peerId) || !this.hasRoom(h)) continue;
        const b = best.get(h.peerId);
        // Ties at random, so that children ask for different pieces and have something to trade.
        if (!b || holders.length < b.count) best.set(h.peerId, { holder: h, number: n, count: holders.length, ties: 1 });
        else if (holders.length === b.count && Math.random() * ++b.ties < 1) b.number = n;
      }
    };
    for (const n of this.queued) consider(n);
    for (const n of mine ?? []) consider(n);
    return [...best.values()]
      .sort((a, b) => a.count - b.count || Math.random() - 0.5)
      .slice(0, RACE_WIDTH - (skip?.size ?? 0))
      .map(({ holder, number }) => ({ holder, number }));
  }

  /**
   * One piece from whichever parent starts sending first. Every parent that can serve us is
   * asked at once and we wait in all their upload queues: a child that bets on one parent
   * idles while that parent serves others and another sits free, which is most of what a
   * swarm loses against its links. Holders reported while we wait join the race.
   */
  private async race(first: Array<{ holder: Holder; number: number }>): Promise<void> {
    const race = this.deps.race!();
    const state: RaceState = { asked: [], parents: new Set(), pieces: new Set() };
    this.races.add(state);
    const ask = (c: { holder: Holder; number: number }) => {
      state.asked.push(c);
      state.parents.add(c.holder.peerId);
      state.pieces.add(c.number);
      this.fetching.add(c.number);
      this.queued.delete(c.number);
      this.load.set(c.holder.peerId, (this.load.get(c.holder.peerId) ?? 0) + 1);
      race.add(c.holder, c.number);
    };
    for (const c of first) ask(c);
    const topUp = () => {
      if (state.startedAt !== undefined) return;
      for (const c of this.raceCandidates(state.parents, state.pieces)) ask(c);
    };
    this.topUp = topUp;
    void race.started.then((i) => {
      if (i >= 0 && state.winner === undefined) {
        state.startedAt = this.now();
        this.letGo(state, i);
      }
      this.notify();
    });
    this.inFlight++;
    let gaveUp: number | undefined;
    try {
      const { index, info } = await race.done;
      const won = state.asked[index];
      if (!won) throw new Error(`race reported candidate ${index} of ${state.asked.length}`);
      if (state.startedAt !== undefined) {
        const ms = this.now() - state.startedAt;
        this.transferMs = this.transferMs === undefined ? ms : (this.transferMs * 3 + ms) / 4;
      }
      this.missing.delete(won.number);
      this.lastProgress = Date.now();
      this.deps.onPiece(info, won.holder);
    } catch (e) {
      const i = await race.started;
      const failed = i >= 0 ? state.asked[i] : undefined;
      if (failed) {
        gaveUp = this.parentFailed(failed.holder, failed.number, e) ? failed.number : undefined;
      } else {
        // Nobody started: every parent refused as busy, was unreachable or timed out. Leave
        // them alone for a moment rather than asking again at once.
        for (const c of state.asked) this.busyUntil.set(c.holder.peerId, this.now() + BUSY_BACKOFF_MS);
        this.deps.log.debug({ parents: state.parents.size, err: e instanceof Error ? e.message : String(e) }, "no parent of the race started sending");
      }
    } finally {
      if (this.topUp === topUp) this.topUp = undefined;
      if (state.winner === undefined) this.letGo(state, -1);
      const kept = state.winner !== undefined ? state.asked[state.winner] : undefined;
      if (kept) {
        this.load.set(kept.holder.peerId, (this.load.get(kept.holder.peerId) ?? 1) - 1);
        this.fetching.delete(kept.number);
        if (this.missing.has(kept.number) && kept.number !== gaveUp) this.queued.add(kept.number);
      }
      this.races.delete(state);
      this.inFlight--;
      this.notify();
    }
  }

  /** Releases every candidate of a race but the winner's (-1: all of them). */
  private letGo(state: RaceState, winner: number): void {
    state.winner = winner;
    const keep = state.asked[winner]?.number;
    for (const [j, c] of state.asked.entries()) if (j !== winner) this.load.set(c.holder.peerId, (this.load.get(c.holder.peerId) ?? 1) - 1);
    for (const n of state.pieces) {
      if (n === keep) continue;
      this.fetching.delete(n);
      if (this.missing.has(n)) this.queued.add(n);
    }
  }

  /**
   * A parent failed piece `n` after it started sending: a corrupt piece blocks it for this
   * task, anything else keeps it from being asked for `n` again in this round. Returns true
   * when no holder is left for `n` and it was handed to the retry path.
   */
  private parentFailed(holder: Holder, n: number, e: unknown): boolean {
    const tried = this.tried.get(n) ?? new Set<string>();
    this.tried.set(n, tried);
    tried.add(holder.peerId);
    this.blockIfCorrupt(holder, n, e);
    if (this.usable(n).length > 0) return false;
    this.retryLater(n, holder, e);
    return true;
  }

  /** A parent that served bytes failing verification is not used again for this task. */
  private blockIfCorrupt(holder: Holder, n: number, e: unknown): void {
    if (isNativeError(e) && e.code === "DF_DIGEST_MISMATCH") {
      const p = this.parents.get(holder.peerId);
      if (p) p.blocked = true;
      this.parentsChanged();
      this.deps.onBadParent(holder, e);
    }
    this.deps.log.debug({ piece: n, parent: holder.peerId, err: e instanceof Error ? e.message : String(e) }, "piece fetch from parent failed");
  }

  private async fetchPiece(n: number): Promise<void> {
    const tried = this.tried.get(n) ?? new Set<string>();
    this.tried.set(n, tried);
    let last: Holder | undefined;
    let lastError: unknown;
    let refused = false;
    let failed = false;
    for (;;) {
      const holder = this.chooseParent(this.usable(n));
      if (!holder) break;
      tried.add(holder.peerId);
      last = holder;
      this.load.set(holder.peerId, (this.load.get(holder.peerId) ?? 0) + 1);
      const asked = this.now();
      try {
        const info = await this.deps.fetch(holder, n).finally(() => this.load.set(holder.peerId, (this.load.get(holder.peerId) ?? 1) - 1));
        this.measured(holder.peerId, info.length, this.now() - asked);
        this.missing.delete(n);
        this.lastProgress = Date.now();
        this.deps.onPiece(info, holder);
        return;
      } catch (e) {
        if (isNativeError(e) && e.code === "DF_BUSY") {
          this.busyUntil.set(holder.peerId, this.now() + BUSY_BACKOFF_MS);
          refused = true;
          continue;
        }
        failed = true;
        lastError = e;
        // A failed request delivered nothing in all that time.
        this.measured(holder.peerId, 0, this.now() - asked);
        this.blockIfCorrupt(holder, n, e);
      }
    }
    if (refused && !failed) {
      // Only busy parents (or none with room): nothing failed, the piece waits for a free slot.
      this.tried.delete(n);
      this.queued.add(n);
      return;
    }
    this.retryLater(n, last, lastError);
  }

  /**
   * Every holder of piece `n` failed it in this round. A SyncPieces stream reports each piece
   * once, so such a piece (a busy or restarting parent) would wait for the round to end: it is
   * retried a few times after a pause while the round still has streams open; a later report
   * also queues it again.
   */
  private retryLater(n: number, last: Holder | undefined, lastError: unknown): void {
    if (last) this.deps.onPieceFailed(n, last, lastError);
    this.queued.delete(n);
    const attempts = (this.retries.get(n) ?? 0) + 1;
    this.retries.set(n, attempts);
    if (attempts > PIECE_RETRIES) {
      this.holders.delete(n);
      return;
    }
    const t = setTimeout(() => {
      if (this.ended || !this.missing.has(n) || this.queued.has(n) || !(this.holders.get(n)?.length ?? 0)) return;
      this.tried.delete(n);
      this.queued.add(n);
      this.notify();
    }, PIECE_RETRY_DELAY_MS);
    t.unref();
  }
}
