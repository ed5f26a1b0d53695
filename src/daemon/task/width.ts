// The width of back-to-source: how many ranges of a task are fetched from the origin at once.

/** A piece that lands this fast costs the swarm no waiting, however many ranges share the link. */
const QUICK_PIECE_MS = 50;
/** How much slower than a lone range a piece may get before more ranges stop paying. */
const SLOWDOWN = 1.5;

/**
 * How many pieces back-to-source fetches at once. It starts with one range and adds one per
 * piece landed, up to `max`, while pieces keep landing about as fast as the first one did
 * alone: then the ranges do not compete for one link (an origin that caps each connection, or
 * a fast one), and more of them add throughput. When pieces slow down in step with the width,
 * the ranges only split a link one of them already fills; every piece then lands late and the
 * last few land together, which is what a seed peer's children wait for. So on such a link
 * pieces come one or two at a time, in order, at the link's pace.
 */
export class BackToSourceWidth {
  target = 1;
  private alone: number | undefined;

  constructor(readonly max: number) {}

  /** A piece landed after `ms` milliseconds in flight. */
  landed(ms: number): void {
    this.alone ??= ms;
    if (this.target < this.max && (ms < QUICK_PIECE_MS || ms < this.alone * SLOWDOWN)) this.target++;
  }
}
