// Which SyncPieces subscriber hears of a freshly landed piece first (BitTorrent's
// "super-seeding"). When every child hears of a new piece at once they all fetch it from us at
// once: our upload is split N ways on the same bytes and the swarm gets one new piece per N
// sends. Instead, a fresh piece is offered to one child for `holdMs` (the children take turns),
// which fetches it at our full rate and then offers it to its own children; the others hear of
// it when the hold ends, by which time most can fetch it from a peer. A piece older than the
// hold, or one landed before anyone subscribed, is offered to everybody at once, so a late
// child or a seed that finished long ago never delays anyone.

export interface Subscriber {
  /** Whether this child still wants piece `n` (it is in its interested set, not yet sent). */
  wants(n: number): boolean;
}

interface TaskSpread {
  subscribers: Subscriber[];
  turn: number;
  /** Fresh pieces: who holds the turn and when the hold ends (ms since epoch). */
  held: Map<number, { owner: Subscriber; until: number }>;
}

export class PieceSpreader {
  private readonly tasks = new Map<string, TaskSpread>();

  constructor(
    readonly holdMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Registers a child's stream for a task; call the result when the stream ends. */
  subscribe(taskId: string, sub: Subscriber): () => void {
    let t = this.tasks.get(taskId);
    if (!t) {
      t = { subscribers: [], turn: 0, held: new Map() };
      this.tasks.set(taskId, t);
    }
    t.subscribers.push(sub);
    const task = t;
    return () => {
      const i = task.subscribers.indexOf(sub);
      if (i >= 0) task.subscribers.splice(i, 1);
      for (const [n, h] of task.held) if (h.owner === sub) task.held.delete(n);
      if (task.subscribers.length === 0) this.tasks.delete(taskId);
    };
  }

  /**
   * A piece just landed here: picks the child whose turn it is among those that want it and
   * starts the hold. Only pieces landing while at least two children want them are held.
   */
  landed(taskId: string, n: number): void {
    const t = this.tasks.get(taskId);
    if (!t || this.holdMs <= 0 || t.held.has(n)) return;
    const wanting = t.subscribers.filter((s) => s.wants(n));
    if (wanting.length < 2) return;
    const owner = wanting[t.turn++ % wanting.length];
    if (owner) t.held.set(n, { owner, until: this.now() + this.holdMs });
  }

  /** Milliseconds until `sub` may hear of piece `n` (0: now). */
  delay(taskId: string, n: number, sub: Subscriber): number {
    const h = this.tasks.get(taskId)?.held.get(n);
    if (!h || h.owner === sub) return 0;
    const left = h.until - this.now();
    if (left <= 0) {
      this.tasks.get(taskId)?.held.delete(n);
      return 0;
    }
    return left;
  }
}
