// One scheduling round of a P2P download: learn which pieces each candidate parent holds
// (SyncPieces, which keeps streaming as the parent's own download progresses), fetch the
// missing pieces, and stop when every piece landed or no parent can give us more. The caller
// reschedules then. Pieces are raced when the store can race (see `race`): one piece at a time,
// asked of every parent that could serve it, taken from whichever starts first. Otherwise each
// piece goes to the parent expected to deliver it first, `concurrency` pieces at a time.
// Every request carries deadlines derived from how fast its parent delivered (see
// pieceDeadlines): a parent that goes silent (a stopped process whose kernel keeps its
// connections open) loses the piece to another holder within seconds, and is dropped for the
// task the second time.
import type { ClientReadableStream } from "@grpc/grpc-js";
import type { Host, Peer } from "../../gen/common/v2/common.js";
import type { SyncPiecesResponse } from "../../gen/dfdaemon/v2/dfdaemon.js";
import type { Logger } from "../../common/logger.js";
import { isNativeError } from "../../native/index.js";
import { HOST_TYPE } from "../host.js";
import type { PieceDeadlines, PieceInfo } from "../storage/types.js";
import { pickWeighted, spareBandwidthWeight, type UploadClientPool } from "./parents.js";
import type { Vouched } from "./vouched.js";
import { errorMessage } from "../../common/errors.js";

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
  /** The task's piece length, to turn a parent's measured speed into a piece time. */
  pieceLength: number;
  /** download.pieceTimeout: the bound on one piece request, and on its stall deadlines. */
  pieceTimeoutMs: number;
  /**
   * How often each parent stalled (DF_STALLED) in this task, shared by the task's rounds: a
   * parent that stalls twice in a task is dropped for it, in whichever rounds that happened.
   */
  stalls?: Map<string, number>;
  uploadClients: UploadClientPool;
  /**
   * Fetches one piece from a parent into the task store, verified (against `expectedDigest`
   * too, when given); throws on any failure. A failure of our own storage (DF_DEVICE_IO,
   * DF_NO_SPACE) queues the piece again without blaming the parent: the caller bounds those by
   * aborting the round (DiskFaults).
   */
  fetch(holder: Holder, number: number, deadlines: PieceDeadlines, expectedDigest?: string): Promise<PieceInfo>;
  /**
   * The origin's piece digests (vouched.ts): every piece is verified against its digest, and
   * a piece whose digest is not known yet is taken only from a parent that fetched it from the
   * origin itself (Peer.need_back_to_source). Unset: the parent's own CRC is all we check.
   */
  vouched?: Vouched;
  /** Starts a race among parents for a piece each (see PieceRound.race); unset = fetch only. */
  race?(): ParentRace;
  onPiece(info: PieceInfo, holder: Holder): void;
  /**
   * Waits until the daemon's download bandwidth allows the `bytes` a worker just landed
   * (download.bandwidthLimit), before that worker asks for its next piece.
   */
  pace?(bytes: number): Promise<void>;
  /** Every parent holding `number` failed it in this round. */
  onPieceFailed(number: number, lastParent: Holder, error: unknown): void;
  /**
   * A parent is dropped for this task: it served bytes that failed verification, or it stalled
   * (went silent) twice. `number` is the piece it failed last, for the report to the scheduler.
   */
  onBadParent(holder: Holder, error: unknown, number: number): void;
  /**
   * Whether a parent's pieces may be used: asked once per parent, after its first SyncPieces
   * report and before any of its pieces is fetched (the task's content version, pin-state.ts).
   * Unset: every parent is used.
   */
  admit?(peer: Peer): Promise<boolean>;
  log: Logger;
  /** Clock for parent speeds and busy back-offs (tests); Date.now by default. */
  now?: () => number;
}

/** One race: each candidate added asks one parent for one piece; the first to start sending wins. */
export interface ParentRace {
  /** Asks `holder` for piece `number` too (verified against `expectedDigest` too, when given); ignored once a parent started sending. */
  add(holder: Holder, number: number, deadlines: PieceDeadlines, expectedDigest?: string): void;
  /** The winner's index (in the order added) once its parent starts sending; -1 if none does. */
  readonly started: Promise<number>;
  /** The winner and its landed, verified piece; rejects when every candidate refused or failed. */
  readonly done: Promise<{ index: number; info: PieceInfo }>;
  /** Candidates (indices) whose parent missed its first-byte deadline (DF_STALLED), so far. */
  stalled(): number[];
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
  /** It fetches the task from the origin (Peer.need_back_to_source): its pieces vouch for themselves. */
  source: boolean;
  /** RoundDeps.admit's answer: unasked, being asked (reports held meanwhile), or given. */
  admission: "unasked" | "asking" | "admitted";
  held: SyncPiecesResponse[];
  /** Its SyncPieces stream, cancelled when the parent is dropped. */
  stream?: ClientReadableStream<unknown>;
}

/** Our disk failed the piece's write: the parent sent it fine and stays usable. */
function isLocalFault(e: unknown): boolean {
  return isNativeError(e) && (e.code === "DF_DEVICE_IO" || e.code === "DF_NO_SPACE");
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

/**
 * Stall deadlines (see pieceDeadlines), in piece times T: how long a piece from the parent
 * takes, from the speed it delivered at lately (else our link's, else ASSUMED_BYTES_PER_MS).
 *
 * Once a parent answers, its bytes keep coming however slow its link: its piece server writes
 * 1 MiB chunks (paced by its rate limiter in grants of at least 64 KiB) into a socket our
 * kernel drains. The longest silence between two reads of a live transfer measured at most
 * 0.96 T, and 113 ms (daemon-p2p: seed peer and 4 peers in one process on 2 cores, 256 pieces
 * of 4 MiB, T 48 ms median) and 181 ms (e2e swarm-p2p, 4 peers at 100 Mbit/s, 64 pieces,
 * T 364 ms median). The idle deadline is 4 T, at least 2 s (10x the longest silence seen: a
 * loopback T of milliseconds says nothing about a GC pause or a busy core on the parent).
 */
const STALL_PIECES = 4;
export const MIN_STALL_MS = 2000;
/**
 * The first reply byte comes only when one of the parent's upload slots frees: our parents
 * send one piece at a time and queue up to 16 more requests (upload.concurrentPieceCount 1,
 * upload.queueLength 16), so a live parent may keep a request ~16 T before it answers, while
 * the idle deadline would drop a busy parent. The waits measured for requests that were
 * answered were far shorter (at most 292 ms on loopback, 318 ms = 0.9 T at 100 Mbit/s: racing
 * children leave every queue but one at once), so 16 T, at least 4 s, is a full queue's worth,
 * and detects a parent stopped between two pieces in a few seconds. A parent that already
 * stalled in this task gets only the idle deadline to answer: its silence was seen once, and
 * a second one as long confirms it (STALLS_TO_DROP).
 */
const FIRST_BYTE_PIECES = 16;
export const MIN_FIRST_BYTE_MS = 4000;
/** Link speed assumed before any piece of the round landed: 10 Mbit/s, a slow link (4 MiB pieces: 13 s idle, 54 s first byte). */
const ASSUMED_BYTES_PER_MS = 1250;
/** Stalls after which a parent is dropped for the task (the first may be a fluke, e.g. a busy parent's full queue). */
const STALLS_TO_DROP = 2;

/**
 * Deadlines of one request to a parent whose pieces take `expectedMs`, each between its floor
 * and download.pieceTimeout: idle = 4 T (at least 2 s); first byte = 16 T (at least 4 s), or
 * the idle deadline for a `suspect` parent (one that stalled before in this task).
 */
export function pieceDeadlines(expectedMs: number, pieceTimeoutMs: number, suspect: boolean): PieceDeadlines {
  const clamp = (ms: number, floor: number) => Math.round(Math.min(pieceTimeoutMs, Math.max(floor, ms)));
  const stallMs = clamp(STALL_PIECES * expectedMs, MIN_STALL_MS);
  const firstByteMs = suspect ? stallMs : clamp(FIRST_BYTE_PIECES * expectedMs, MIN_FIRST_BYTE_MS);
  return { pieceMs: pieceTimeoutMs, firstByteMs, stallMs };
}

const isStall = (e: unknown) => isNativeError(e) && e.code === "DF_STALLED";

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
  /** SyncHost streams by host id, cancelled once every parent on the host is dropped. */
  private readonly hostStreams = new Map<string, ClientReadableStream<unknown>>();
  private readonly syncedHosts = new Set<string>();
  private readonly stalls: Map<string, number>;
  private readonly retries = new Map<number, number>();
  private perParent = PARENT_IN_FLIGHT;
  private readonly races = new Set<RaceState>();
  /** Moving average of a raced piece's transfer, from its first byte to landed. */
  private transferMs: number | undefined;
  /** Add newly reported (or newly usable) holders to the races still waiting for a parent. */
  private readonly topUps = new Set<() => void>();
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
    this.stalls = deps.stalls ?? new Map<string, number>();
    for (const peer of candidates) this.addParent(peer);
  }

  private addParent(peer: Peer): ParentState | undefined {
    if (!peer.host || !peer.host.ip || this.parents.has(peer.id)) return undefined;
    // Dropped for this task in an earlier round (the scheduler was told; a stale list may still name it).
    if ((this.stalls.get(peer.id) ?? 0) >= STALLS_TO_DROP) return undefined;
    const p: ParentState = {
      peer,
      host: peer.host,
      weight: spareBandwidthWeight(peer.host.network?.maxTxBandwidth, peer.host.network?.txBandwidth),
      blocked: false,
      seed: peer.host.type !== HOST_TYPE.normal,
      source: peer.needBackToSource,
      admission: this.deps.admit ? "unasked" : "admitted",
      held: [],
    };
    this.parents.set(peer.id, p);
    this.parentsChanged();
    return p;
  }

  /** Runs until all missing pieces are fetched (true) or the round cannot progress (false). */
  async run(signal?: AbortSignal): Promise<boolean> {
    this.running = true;
    for (const p of this.parents.values()) this.sync(p);
    this.syncHosts();
    // Digests learnt while we wait make held pieces usable from every holder.
    const unsubscribe = this.deps.vouched?.onChange(() => {
      this.lastProgress = Date.now();
      this.notify();
    });
    const workers = Array.from({ length: this.deps.concurrency }, () => this.worker(signal));
    try {
      await Promise.all(workers);
    } finally {
      this.ended = true;
      unsubscribe?.();
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

  /**
   * Something changed (a report, a landed or failed piece, a parent dropped): the races still
   * waiting for a parent to start get the candidates this opened up (a new holder, or a piece
   * whose parent stalled, now asked of another holder), and idle workers wake up.
   */
  private notify(): void {
    for (const t of this.topUps) t();
    const woken = [...this.waiting];
    this.waiting.clear();
    for (const w of woken) w();
  }

  private sync(p: ParentState): void {
    const client = this.deps.uploadClients.get(p.host.ip, p.host.port);
    const stream = client.syncPieces({ hostId: this.deps.hostId, taskId: this.deps.taskId, interestedPieceNumbers: [...this.missing] });
    this.streams.push(stream);
    p.stream = stream;
    this.openSyncs++;
    stream.on("data", (r: SyncPiecesResponse) => {
      if (p.blocked || !this.missing.has(r.number)) return;
      if (p.admission !== "admitted") {
        p.held.push(r);
        if (p.admission === "unasked") this.admit(p);
        return;
      }
      this.reported(p, r);
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

  /** A parent holds piece `r.number`: it becomes a holder of it. */
  private reported(p: ParentState, r: SyncPiecesResponse): void {
    const holder: Holder = { peerId: p.peer.id, hostId: p.host.id, ip: r.ip || p.host.ip, tcpPort: r.tcpPort ?? 0, quicPort: r.quicPort ?? 0 };
    if (!holder.tcpPort) return; // a parent that gives no piece port cannot serve bytes
    const list = this.holders.get(r.number) ?? [];
    list.push(holder);
    this.holders.set(r.number, list);
    this.lastProgress = Date.now();
    if (!this.fetching.has(r.number)) this.queued.add(r.number);
    this.notify();
  }

  /**
   * Asks whether a parent may serve us (RoundDeps.admit), once it reported a piece: meanwhile
   * its reports wait, and the round counts the question as an open sync so it does not end
   * for want of reports. A parent refused is blocked for the round.
   */
  private admit(p: ParentState): void {
    if (!this.deps.admit) return;
    p.admission = "asking";
    this.openSyncs++;
    void this.deps
      .admit(p.peer)
      .catch(() => false)
      .then((ok) => {
        this.openSyncs--;
        if (ok) {
          p.admission = "admitted";
          for (const r of p.held.splice(0)) if (!p.blocked && this.missing.has(r.number)) this.reported(p, r);
        } else {
          p.held.length = 0;
          p.blocked = true;
          this.parentsChanged();
        }
        this.notify();
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
      this.hostStreams.set(p.host.id, stream);
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
    let all = (this.holders.get(n) ?? []).filter((h) => !tried?.has(h.peerId) && !this.parents.get(h.peerId)?.blocked);
    const vouched = this.deps.vouched;
    if (vouched && vouched.get(n) === undefined && all.length > 0) {
      // Nothing to check another parent's bytes against yet: only a source may serve it.
      const sources = all.filter((h) => this.parents.get(h.peerId)?.source);
      if (sources.length < all.length) vouched.want();
      all = sources;
    }
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

  /**
   * How long a piece from this parent takes: from the speed it delivered at lately, else from
   * our link's (the round's raced transfers from any parent), else at an assumed slow link's.
   */
  private expectedPieceMs(peerId: string): number {
    const s = this.speed.get(peerId);
    if (s && s.bytesPerMs > 0) return this.deps.pieceLength / s.bytesPerMs;
    return this.transferMs ?? this.deps.pieceLength / ASSUMED_BYTES_PER_MS;
  }

  private deadlines(h: Holder): PieceDeadlines {
    return pieceDeadlines(this.expectedPieceMs(h.peerId), this.deps.pieceTimeoutMs, (this.stalls.get(h.peerId) ?? 0) > 0);
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
          await this.paced(await this.race(candidates));
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
      let landed = 0;
      try {
        landed = await this.fetchPiece(n);
      } finally {
        this.fetching.delete(n);
        this.inFlight--;
        this.notify();
      }
      await this.paced(landed);
    }
  }

  private async paced(landed: number): Promise<void> {
    if (landed > 0) await this.deps.pace?.(landed);
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
   * Resolves with the bytes landed (0 when none).
   */
  private async race(first: Array<{ holder: Holder; number: number }>): Promise<number> {
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
      race.add(c.holder, c.number, this.deadlines(c.holder), this.deps.vouched?.get(c.number));
    };
    for (const c of first) ask(c);
    const topUp = () => {
      if (state.startedAt !== undefined) return;
      for (const c of this.raceCandidates(state.parents, state.pieces)) ask(c);
    };
    this.topUps.add(topUp);
    void race.started.then((i) => {
      if (i >= 0 && state.winner === undefined) {
        state.startedAt = this.now();
        this.letGo(state, i);
      }
      this.notify();
    });
    this.inFlight++;
    let gaveUp: number | undefined;
    let landed = 0;
    try {
      const { index, info } = await race.done;
      const won = state.asked[index];
      if (!won) throw new Error(`race reported candidate ${index} of ${state.asked.length}`);
      if (state.startedAt !== undefined) {
        const ms = this.now() - state.startedAt;
        this.transferMs = this.transferMs === undefined ? ms : (this.transferMs * 3 + ms) / 4;
        this.measured(won.holder.peerId, info.length, ms);
      }
      this.missing.delete(won.number);
      this.lastProgress = Date.now();
      this.deps.onPiece(info, won.holder);
      landed = info.length;
    } catch (e) {
      const i = await race.started;
      const failed = i >= 0 ? state.asked[i] : undefined;
      if (failed && isLocalFault(e)) {
        this.deps.log.debug({ piece: failed.number, parent: failed.holder.peerId, err: errorMessage(e) }, "storing a raced piece failed; asking again");
      } else if (failed) {
        gaveUp = this.parentFailed(failed.holder, failed.number, e) ? failed.number : undefined;
      } else {
        // Nobody started: every parent refused as busy, was unreachable, timed out or stalled.
        // Leave the live ones alone for a moment rather than asking again at once (the
        // stalled ones are dealt with below).
        const stalled = new Set(race.stalled());
        for (const [j, c] of state.asked.entries()) if (!stalled.has(j)) this.busyUntil.set(c.holder.peerId, this.now() + BUSY_BACKOFF_MS);
        this.deps.log.debug({ parents: state.parents.size, err: errorMessage(e) }, "no parent of the race started sending");
      }
    } finally {
      this.topUps.delete(topUp);
      if (state.winner === undefined) this.letGo(state, -1);
      const kept = state.winner !== undefined ? state.asked[state.winner] : undefined;
      if (kept) {
        this.load.set(kept.holder.peerId, (this.load.get(kept.holder.peerId) ?? 1) - 1);
        this.fetching.delete(kept.number);
        if (this.missing.has(kept.number) && kept.number !== gaveUp) this.queued.add(kept.number);
      }
      this.races.delete(state);
      this.inFlight--;
      // Candidates whose parent never started answering within their first-byte deadline: the
      // piece goes to another holder, and the silence counts against the parent.
      for (const j of race.stalled()) {
        const c = state.asked[j];
        if (!c || j === state.winner) continue;
        const silent = Object.assign(new Error(`parent ${c.holder.peerId} did not start answering piece ${c.number}`), { code: "DF_STALLED" });
        if (this.missing.has(c.number)) this.parentFailed(c.holder, c.number, silent);
        else this.parentError(c.holder, c.number, silent);
      }
      this.notify();
    }
    return landed;
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
    this.parentError(holder, n, e);
    if (this.usable(n).length > 0) return false;
    this.retryLater(n, holder, e);
    return true;
  }

  /**
   * What a failure says about the parent: one that served bytes failing verification is
   * dropped for this task at once; one that stalled (went silent), the second time it does.
   */
  private parentError(holder: Holder, n: number, e: unknown): void {
    this.deps.log.debug({ piece: n, parent: holder.peerId, err: errorMessage(e) }, "piece fetch from parent failed");
    if (isNativeError(e) && e.code === "DF_DIGEST_MISMATCH") {
      this.dropParent(holder, n, e);
    } else if (isStall(e)) {
      const stalls = (this.stalls.get(holder.peerId) ?? 0) + 1;
      this.stalls.set(holder.peerId, stalls);
      this.deps.log.info({ piece: n, parent: holder.peerId, host: holder.ip, stalls, err: errorMessage(e) }, "parent stalled");
      if (stalls >= STALLS_TO_DROP) this.dropParent(holder, n, e);
    }
  }

  /**
   * Drops a parent for this task: no more requests, and its SyncPieces stream (and SyncHost,
   * once no other parent on its host is left) is cancelled, so the round does not wait for
   * reports from it: with no other parent left it ends, and the task goes back to the
   * scheduler (or to the origin) as when parents fail.
   */
  private dropParent(holder: Holder, n: number, e: unknown): void {
    const p = this.parents.get(holder.peerId);
    if (!p || p.blocked) return;
    p.blocked = true;
    this.parentsChanged();
    p.stream?.cancel();
    if (![...this.parents.values()].some((q) => q.host.id === p.host.id && !q.blocked)) this.hostStreams.get(p.host.id)?.cancel();
    this.deps.onBadParent(holder, e, n);
    this.notify();
  }

  /** Piece `n` from one parent at a time; resolves with the bytes landed (0 when none). */
  private async fetchPiece(n: number): Promise<number> {
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
        const info = await this.deps.fetch(holder, n, this.deadlines(holder), this.deps.vouched?.get(n)).finally(() => this.load.set(holder.peerId, (this.load.get(holder.peerId) ?? 1) - 1));
        this.measured(holder.peerId, info.length, this.now() - asked);
        this.missing.delete(n);
        this.lastProgress = Date.now();
        this.deps.onPiece(info, holder);
        return info.length;
      } catch (e) {
        if (isLocalFault(e)) {
          tried.delete(holder.peerId);
          this.queued.add(n);
          return 0;
        }
        if (isNativeError(e) && e.code === "DF_BUSY") {
          this.busyUntil.set(holder.peerId, this.now() + BUSY_BACKOFF_MS);
          refused = true;
          continue;
        }
        failed = true;
        lastError = e;
        // A failed request delivered nothing in all that time.
        this.measured(holder.peerId, 0, this.now() - asked);
        this.parentError(holder, n, e);
      }
    }
    if (refused && !failed) {
      // Only busy parents (or none with room): nothing failed, the piece waits for a free slot.
      this.tried.delete(n);
      this.queued.add(n);
      return 0;
    }
    this.retryLater(n, last, lastError);
    return 0;
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
