// Bounded window of the most recent piece costs of a peer, with the statistics Dragonfly's
// "bad parent" test needs: mean and standard deviation of every sample except the newest.
export class RollingWindow {
  private readonly buf: Float64Array;
  private start = 0;
  private n = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 2) throw new RangeError(`capacity must be an integer >= 2, got ${capacity}`);
    this.buf = new Float64Array(capacity);
  }

  get count(): number {
    return this.n;
  }

  get isFull(): boolean {
    return this.n === this.capacity;
  }

  add(x: number): void {
    if (this.n < this.capacity) {
      this.buf[(this.start + this.n) % this.capacity] = x;
      this.n++;
    } else {
      this.buf[this.start] = x;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  get last(): number {
    return this.n === 0 ? 0 : (this.buf[(this.start + this.n - 1) % this.capacity] ?? 0);
  }

  values(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.n; i++) out.push(this.buf[(this.start + i) % this.capacity] ?? 0);
    return out;
  }

  meanExcludingLast(): number {
    if (this.n < 2) return 0;
    let s = 0;
    for (let i = 0; i < this.n - 1; i++) s += this.buf[(this.start + i) % this.capacity] ?? 0;
    return s / (this.n - 1);
  }

  stdDevExcludingLast(): number {
    if (this.n < 2) return 0;
    const mean = this.meanExcludingLast();
    let s = 0;
    for (let i = 0; i < this.n - 1; i++) {
      const d = (this.buf[(this.start + i) % this.capacity] ?? 0) - mean;
      s += d * d;
    }
    return Math.sqrt(s / (this.n - 1));
  }

  /** Mean of all samples (0 when empty). */
  mean(): number {
    if (this.n === 0) return 0;
    let s = 0;
    for (let i = 0; i < this.n; i++) s += this.buf[(this.start + i) % this.capacity] ?? 0;
    return s / this.n;
  }
}
