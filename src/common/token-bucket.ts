// The one token bucket: `ratePerSecond` tokens refill continuously up to `burst`; each take()
// spends one. Used for request rates (the scheduler's gRPC limit, the proxy's requestRateLimit),
// for rate-limited logging, and with reserve() for byte rates (the daemon's download and
// prefetch bandwidth, one token a byte).
/** A promise and its resolve (Promise.withResolvers is newer than Node 20). */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Longest single timer of paced(): Node fires longer ones (over 2^31 ms) at once. */
const MAX_SLEEP_MS = 60_000;

/** A reserve()'s place in line: how long its caller still has to wait at the current rate. */
export interface Reservation {
  /** ms until the debt up to this reservation is paid back; 0 once it is. */
  waitMs(): number;
}

export class TokenBucket {
  private tokens: number;
  private last: number;
  private spent = 0;
  /** Tokens refilled since the start: a reservation is paid once this reaches its ticket. */
  private refilled = 0;
  private changed = signal();

  constructor(
    private ratePerSecond: number,
    private burst: number = Math.max(1, ratePerSecond),
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = this.burst;
    this.last = this.now();
  }

  private refill(): void {
    const t = this.now();
    const added = Math.min(Math.max(0, this.burst - this.tokens), ((t - this.last) / 1000) * this.ratePerSecond);
    this.tokens += added;
    this.refilled += added;
    this.last = t;
  }

  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    this.spent += 1;
    return true;
  }

  /**
   * Spends `n` tokens at once, also more than the bucket holds (a piece larger than the
   * burst), leaving a debt that callers after this one wait off as well: each waits until
   * the debt up to its own reservation is paid back, in the order they reserved, at whatever
   * the rate is meanwhile (setRate).
   */
  reserve(n: number): Reservation {
    this.refill();
    this.tokens -= n;
    this.spent += n;
    const ticket = this.refilled + Math.max(0, -this.tokens);
    return {
      waitMs: () => {
        this.refill();
        const owed = ticket - this.refilled;
        return owed > 0 ? (owed / this.ratePerSecond) * 1000 : 0;
      },
    };
  }

  /** Tokens spent since the bucket was made: what it admitted. */
  get admitted(): number {
    return this.spent;
  }

  get rate(): number {
    return this.ratePerSecond;
  }

  /** Settles at the next setRate(): waits computed at the old rate are out of date. */
  get rateChanged(): Promise<void> {
    return this.changed.promise;
  }

  /**
   * A new rate from now on, with a burst of one second of it unless given. Tokens saved
   * beyond the new burst go; a debt stays, and is paid back at the new rate.
   */
  setRate(ratePerSecond: number, burst: number = Math.max(1, ratePerSecond)): void {
    this.refill();
    this.ratePerSecond = ratePerSecond;
    this.burst = burst;
    this.tokens = Math.min(this.tokens, burst);
    this.changed.resolve();
    this.changed = signal();
  }
}

/**
 * reserve(n), then waits until the bucket says so, again after each rate change; resolves
 * early (never rejects) once `signal` aborts.
 */
export async function paced(bucket: TokenBucket, n: number, signal?: AbortSignal): Promise<void> {
  const r = bucket.reserve(n);
  for (let ms = r.waitMs(); ms > 0 && !signal?.aborted; ms = r.waitMs()) {
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    await Promise.race([
      bucket.rateChanged,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.min(ms, MAX_SLEEP_MS));
        onAbort = resolve;
        signal?.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}
