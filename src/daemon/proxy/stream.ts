// Streams bytes [start, end] of a task to an HTTP response as its pieces land: pieces are read
// in order, one at a time, and the next is read only once the socket drained the previous one,
// so a request holds at most about one piece in memory however fast the swarm is. The last
// `holdBack` bytes can be withheld until the caller has verified the whole content (digest), so
// a client never receives a complete body whose bytes are wrong.
import type { ServerResponse } from "node:http";
import type { PieceInfo, TaskStore } from "../storage/types.js";
import { coveringPieces } from "./range.js";

export class PieceStream {
  private task: TaskStore | undefined;
  private readonly ready = new Set<number>();
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
    res.once("close", () => {
      this.closed = true;
      this.settle(false);
    });
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

  piece(p: PieceInfo): void {
    this.ready.add(p.number);
    void this.pump();
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
        const buf = await task.readPiece(n);
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
        if (chunk.length > 0 && !this.res.write(chunk)) await this.drained();
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

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.res.off("drain", done);
        this.res.off("close", done);
        resolve();
      };
      this.res.on("drain", done);
      this.res.on("close", done);
    });
  }
}
