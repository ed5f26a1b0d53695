// Warn lines that a flood cannot multiply: at most one line per key per interval, the lines
// held back in between counted and reported with the next one. Keys must come from a small
// fixed set (refusal reasons), since each keeps its own bucket for the process's lifetime.
import type { Logger } from "../../common/logger.js";
import { TokenBucket } from "../../common/token-bucket.js";

export class RateLimitedLog {
  private readonly keys = new Map<string, { bucket: TokenBucket; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 10_000,
    private readonly now?: () => number,
  ) {}

  /** Logs at warn unless this key already logged within the interval; true when it did. */
  warn(key: string, fields: Record<string, unknown>, message: string): boolean {
    let k = this.keys.get(key);
    if (!k) {
      // One token, refilled once per interval.
      k = { bucket: new TokenBucket(1000 / this.intervalMs, 1, this.now), suppressed: 0 };
      this.keys.set(key, k);
    }
    if (!k.bucket.take()) {
      k.suppressed++;
      return false;
    }
    this.log.warn(k.suppressed > 0 ? { ...fields, suppressed: k.suppressed } : fields, k.suppressed > 0 ? `${message} (${k.suppressed} more like it since the last line)` : message);
    k.suppressed = 0;
    return true;
  }
}
