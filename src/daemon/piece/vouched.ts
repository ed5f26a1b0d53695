// The digests of a task's pieces as the origin delivered them, vouched for by the peers that
// fetched them from the origin (issue 21). The CRC a parent puts in the vortex frame only
// proves the bytes were not damaged on the way: a parent that lies computes the CRC of the
// bytes it makes up. So a receiver learns each piece's digest from someone the sending parent
// does not control: the back-to-source peer reports it to the scheduler
// (DownloadPieceBackToSourceFinishedRequest.piece.digest, blake3 from our daemons, crc32 from
// Dragonfly's), the scheduler keeps it on the task, and we read the task's pieces with StatTask
// (Task.pieces, which Dragonfly's scheduler fills the same way). A piece whose digest is not
// known yet is taken only from a parent that fetched it from the origin itself (the scheduler
// names those with Peer.need_back_to_source): its own report is the digest.
//
// Pulled, not pushed: candidate lists are re-sent whole with every parent top-up, and the
// digests of a 1 GiB task (256 pieces, ~100 bytes each) would ride along with every candidate
// of every top-up; a StatTask is asked only while some parent holds a piece whose digest we
// lack, at most every `minIntervalMs`.
import type { Task } from "../../gen/common/v2/common.js";
import type { Logger } from "../../common/logger.js";
import { errorMessage } from "../../common/errors.js";

export interface VouchedDigestsDeps {
  /** The scheduler's view of the task (StatTask); undefined when it does not know the task. */
  statTask(): Promise<Task | undefined>;
  /** Least time between two StatTask calls. */
  minIntervalMs: number;
  log: Logger;
  now?: () => number;
}

/** What a piece round needs of the vouched digests (PieceRound's RoundDeps.vouched). */
export interface Vouched {
  /** The origin's digest of piece `number`, if a back-to-source peer reported it. */
  get(number: number): string | undefined;
  /** Some parent holds a piece whose digest we lack: ask the scheduler again (throttled). */
  want(): void;
  /** Calls `fn` whenever digests were learnt; returns the unsubscribe. */
  onChange(fn: () => void): () => void;
}

export class VouchedDigests implements Vouched {
  private readonly digests = new Map<number, string>();
  private readonly listeners = new Set<() => void>();
  private asking = false;
  private lastAskedAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly deps: VouchedDigestsDeps) {}

  get(number: number): string | undefined {
    return this.digests.get(number);
  }

  get size(): number {
    return this.digests.size;
  }

  want(): void {
    if (this.closed || this.asking || this.timer) return;
    const wait = this.lastAskedAt + this.deps.minIntervalMs - this.now();
    if (wait <= 0) return void this.ask();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.ask();
    }, wait);
    this.timer.unref();
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Asks the scheduler now (the first time, before a round picks its first pieces). */
  async ask(): Promise<void> {
    if (this.closed || this.asking) return;
    this.asking = true;
    this.lastAskedAt = this.now();
    try {
      const task = await this.deps.statTask();
      if (this.closed) return;
      let learnt = 0;
      for (const p of task?.pieces ?? []) {
        // The scheduler's latest word: it replaces a crc32 by a later blake3 report.
        if (!p.digest || this.digests.get(p.number) === p.digest) continue;
        this.digests.set(p.number, p.digest);
        learnt++;
      }
      if (learnt > 0) for (const fn of [...this.listeners]) fn();
    } catch (e) {
      this.deps.log.debug({ err: errorMessage(e) }, "cannot read the task's piece digests from the scheduler");
    } finally {
      this.asking = false;
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }
}
