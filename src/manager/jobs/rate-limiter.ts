// Per-cluster limit on job creation (Dragonfly: `job_rate_limit` in the scheduler cluster's
// config, default 10 per second, exceeded → 429). A token bucket per cluster, in memory: each
// manager replica enforces the limit on the requests it receives.
export const DEFAULT_JOB_RATE_LIMIT = 10;

interface Bucket {
  tokens: number;
  rate: number;
  updatedAt: number;
}

export class JobRateLimiter {
  private readonly buckets = new Map<number, Bucket>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /**
   * Takes one token from each cluster's bucket, all or nothing. Returns the id of a cluster that
   * is over its limit, or undefined when the job may be created.
   */
  take(clusters: ReadonlyArray<{ id: number; rate: number }>): number | undefined {
    const t = this.now();
    const refreshed = clusters.map((c) => {
      const b = this.buckets.get(c.id) ?? { tokens: c.rate, rate: c.rate, updatedAt: t };
      const tokens = Math.min(c.rate, b.tokens + ((t - b.updatedAt) / 1000) * c.rate);
      return { id: c.id, bucket: { tokens, rate: c.rate, updatedAt: t } };
    });
    const blocked = refreshed.find((r) => r.bucket.tokens < 1);
    for (const r of refreshed) {
      if (!blocked) r.bucket.tokens -= 1;
      this.buckets.set(r.id, r.bucket);
    }
    return blocked?.id;
  }
}
