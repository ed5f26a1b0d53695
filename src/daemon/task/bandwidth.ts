// download.bandwidthLimit and proxy.prefetchBandwidthLimit: the daemon's total download rate
// across all its downloads, from parents and from origins alike, and the rate of its prefetches
// (whole-task downloads a ranged proxy request started), which Dragonfly's client paces with
// its prefetch limiter instead of the download one. Paced per piece as there: each piece's
// length is charged to the bucket and the download waits off the debt, one token a byte.
import { paced, TokenBucket } from "../../common/token-bucket.js";

export interface BandwidthLimits {
  /** bytes/s */
  download: number;
  /** bytes/s */
  prefetch: number;
}

export class DownloadBandwidth {
  readonly download: TokenBucket;
  readonly prefetch: TokenBucket;

  constructor(limits: BandwidthLimits) {
    this.download = new TokenBucket(limits.download);
    this.prefetch = new TokenBucket(limits.prefetch);
  }

  /** Charges `bytes` and resolves once the rate allows them (early, never rejecting, on abort). */
  pace(bytes: number, prefetch: boolean, signal?: AbortSignal): Promise<void> {
    return paced(prefetch ? this.prefetch : this.download, bytes, signal);
  }

  /** New limits from now on (dynconfig); downloads in progress go on at the new rates. */
  setLimits(limits: Partial<BandwidthLimits>): void {
    if (limits.download !== undefined && limits.download !== this.download.rate) this.download.setRate(limits.download);
    if (limits.prefetch !== undefined && limits.prefetch !== this.prefetch.rate) this.prefetch.setRate(limits.prefetch);
  }

  get limits(): BandwidthLimits {
    return { download: this.download.rate, prefetch: this.prefetch.rate };
  }
}
