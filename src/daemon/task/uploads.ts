// Which tasks children are downloading from us right now: a child keeps a SyncPieces stream
// open while it learns which pieces we hold, then pulls their bytes from the piece server, which
// logs every piece it sent. Storage GC, eviction under ENOSPC and the cleanup of a failed task
// leave such a task alone: deleting it would only cut a child's transfer short and send it back
// to the scheduler for another parent.

/**
 * How long after the piece server last sent a piece of a task it still counts as being
 * uploaded: a child fetching a task's pieces one after another leaves gaps between them (its
 * round, a slow link), and the upload log is drained once a second.
 */
export const UPLOAD_GRACE_MS = 30_000;

export class TaskUploads {
  /** Open SyncPieces streams per task. */
  private readonly streams = new Map<string, number>();
  /** When the piece server last sent a piece of each task. */
  private readonly lastServed = new Map<string, number>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly graceMs = UPLOAD_GRACE_MS,
  ) {}

  /** A child opened a SyncPieces stream for the task; the returned function closes it (once). */
  open(taskId: string): () => void {
    this.streams.set(taskId, (this.streams.get(taskId) ?? 0) + 1);
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      const left = (this.streams.get(taskId) ?? 1) - 1;
      if (left > 0) this.streams.set(taskId, left);
      else this.streams.delete(taskId);
    };
  }

  /** The piece server sent a piece of the task to a child. */
  served(taskId: string): void {
    this.lastServed.set(taskId, this.now());
  }

  /** Whether a child is downloading the task from us (an open stream, or a piece sent lately). */
  active(taskId: string): boolean {
    if ((this.streams.get(taskId) ?? 0) > 0) return true;
    const at = this.lastServed.get(taskId);
    if (at === undefined) return false;
    if (this.now() - at < this.graceMs) return true;
    this.lastServed.delete(taskId);
    return false;
  }

  /** Runs `fn` once no child is downloading the task any more (at once when none is). */
  whenIdle(taskId: string, fn: () => void, pollMs = 1000): void {
    const check = () => {
      if (!this.active(taskId)) return fn();
      setTimeout(check, pollMs).unref();
    };
    check();
  }
}
