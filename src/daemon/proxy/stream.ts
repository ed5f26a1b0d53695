// Streams bytes [start, end] of a task to an HTTP response as its pieces land, in order. A piece
// that lands with its bytes (streamed back-to-source) is sent from them when the response is
// ready for it; any other is read from the store. At most two pieces wait in the response's
// buffer (the socket keeps draining one while the next is queued) and one more is kept aside,
// so a slow client holds a few pieces in memory however fast the origin or the swarm is; the
// pieces it falls behind on are read back from the store when it gets to them. The last
// `holdBack` bytes can be withheld until the caller has verified the whole content (digest), so
// a client never receives a complete body whose bytes are wrong.
import type { ServerResponse } from "node:http";
import type { PieceInfo, TaskStore } from "../storage/types.js";
import { coveringPieces } from "./range.js";

/** Stored pieces read ahead of the one being sent. */
const READ_AHEAD = 2;

export class PieceStream {
  private task: TaskStore | undefined;
  private readonly ready = new Set<number>();
  /** Bytes handed over with their piece, and how to let the producer reuse them. */
  private readonly inline = new Map<number, { data: Buffer; release: () => void }>();
  /** Producers' bytes queued in the response: released once written or when it closes. */
  private readonly sending = new Set<() => void>();
  /** Store reads started ahead of the response (at most READ_AHEAD pieces). */
  private readonly reads = new Map<number, Promise<Buffer>>();
  /** Settles when the response closed. */
  private readonly gone: Promise<void>;
  /** Settles when the previous write left the response's buffer. */
  private previousWrite: Promise<void> = Promise.resolve();
  private next = 0;
  private last = -1;
  private pumping = false;
  private closed = false;
  private failure: Error | undefined;
  private tail: Buffer | undefined;
  private settle!: (ok: boolean) => void;
  /** Resolves true when every byte (except a held-back tail) was written, false if the client went away. */
  readonly written: Promise<boolean> = new Promise((resolve) => (this.settle = resolve));

  constructor(
    private readonly res: ServerResponse,
    private readonly start: number,
    private readonly end: number,
    private readonly holdBack = 0,
  ) {
    this.gone = new Promise((resolve) =>
      res.once("close", () => {
        this.closed = true;
        this.releaseAll();
        this.settle(false);
        resolve();
      }),
    );
  }

  /** The task's layout is known; `present` are the pieces already stored. */
  started(task: TaskStore, present: readonly PieceInfo[]): void {
    this.task = task;
    const { first, last } = coveringPieces(this.start, this.end, task.meta.pieceLength);
    this.next = first;
    this.last = this.end < this.start ? first - 1 : last;
    for (const p of present) this.ready.add(p.number);
    void this.pump();
  }

  /**
   * Piece `p` landed. With `data`, returns a promise while it keeps using the bytes (the
   * producer must not reuse them before it settles); undefined when it will read the store.
   */
  piece(p: PieceInfo, data?: Buffer): Promise<void> | undefined {
    this.ready.add(p.number);
    let held: Promise<void> | undefined;
    // Only the piece the response needs next (or the one after): a client that falls behind
    // does not make us keep the bytes of every piece it has yet to take.
    if (data && !this.closed && p.number >= this.next && p.number <= this.next + 1 && this.inline.size < 2 && p.number <= this.last) {
      held = new Promise<void>((resolve) => this.inline.set(p.number, { data, release: resolve }));
    }
    void this.pump();
    return held;
  }

  /** Whether every piece this range needs is written (the tail may still be held back). */
  get complete(): boolean {
    return this.task !== undefined && this.next > this.last;
  }

  get holdsBack(): boolean {
    return this.holdBack > 0;
  }

  get error(): Error | undefined {
    return this.failure;
  }

  /** Sends the held-back tail and ends the response. */
  finish(): void {
    if (this.closed) return;
    if (this.tail) this.res.end(this.tail);
    else this.res.end();
  }

  private async pump(): Promise<void> {
    if (this.pumping || !this.task) return;
    this.pumping = true;
    try {
      const task = this.task;
      const pl = task.meta.pieceLength;
      while (!this.closed && this.next <= this.last && this.ready.has(this.next)) {
        const n = this.next;
        const kept = this.inline.get(n);
        this.inline.delete(n);
        const buf = kept ? kept.data : await this.read(task, n);
        const pieceStart = n * pl;
        const from = Math.max(this.start, pieceStart) - pieceStart;
        const to = Math.min(this.end + 1, pieceStart + buf.length) - pieceStart;
        let chunk = buf.subarray(from, to);
        if (n === this.last && this.holdBack > 0) {
          const keep = Math.min(this.holdBack, chunk.length);
          this.tail = Buffer.from(chunk.subarray(chunk.length - keep));
          chunk = chunk.subarray(0, chunk.length - keep);
        }
        this.next = n + 1;
        if (chunk.length > 0) {
          const previous = this.previousWrite;
          const release = kept?.release;
          if (release) this.sending.add(release);
          this.previousWrite = new Promise<void>((resolve) => {
            this.res.write(chunk, () => {
              if (release && this.sending.delete(release)) release();
              resolve();
            });
          });
          // Queued: keep at most this piece and the one before it in the response's buffer.
          if (this.res.writableNeedDrain) await Promise.race([previous, this.gone]);
        } else {
          kept?.release();
        }
      }
      if (this.next > this.last && !this.closed) this.settle(true);
    } catch (e) {
      this.failure = e instanceof Error ? e : new Error(String(e));
      this.res.destroy(this.failure);
    } finally {
      this.pumping = false;
    }
    // A piece may have become ready while the last read was in flight.
    if (!this.closed && !this.failure && this.next <= this.last && this.ready.has(this.next)) void this.pump();
  }


  /**
   * Piece `n` from the store, with the next stored pieces' reads started meanwhile, so the
   * disk works while the socket drains (a response served from the store is read-bound).
   */
  private read(task: TaskStore, n: number): Promise<Buffer> {
    const own = this.reads.get(n) ?? task.readPiece(n);
    this.reads.delete(n);
    for (let k = n + 1; k <= Math.min(this.last, n + READ_AHEAD); k++) {
      if (this.reads.has(k) || this.inline.has(k) || !this.ready.has(k)) continue;
      const r = task.readPiece(k);
      // Read errors surface when the piece's turn comes; a closed response drops them.
      r.catch(() => undefined);
      this.reads.set(k, r);
    }
    return own;
  }

  private releaseAll(): void {
    this.reads.clear();
    for (const { release } of this.inline.values()) release();
    this.inline.clear();
    for (const release of this.sending) release();
    this.sending.clear();
  }
}
