// The token bucket as a byte-rate limiter (download.bandwidthLimit): reservations beyond what
// it holds leave a debt waited off in the order reserved, a rate change re-times the waits
// already promised, and paced() lets its callers go as the bucket says. The clock is the
// test's, so nothing depends on how fast the machine runs.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/common/config.js";
import { paced, TokenBucket } from "../../src/common/token-bucket.js";
import { DaemonConfigSchema, resolveDaemonConfig } from "../../src/daemon/config.js";

describe("TokenBucket reserve", () => {
  it("admits within the burst at once, then makes each later caller wait for the debt before it", () => {
    let t = 0;
    const b = new TokenBucket(1000, 1000, () => t);
    expect(b.reserve(600).waitMs()).toBe(0);
    const second = b.reserve(600); // 200 owed: 200 ms at 1000/s
    const third = b.reserve(1000); // 1200 owed
    expect(second.waitMs()).toBe(200);
    expect(third.waitMs()).toBe(1200);
    t = 200;
    expect(second.waitMs()).toBe(0);
    expect(third.waitMs()).toBe(1000);
    expect(b.admitted).toBe(2200);
  });

  it("re-times the waits already promised when the rate changes", () => {
    let t = 0;
    const b = new TokenBucket(100, 100, () => t);
    const r = b.reserve(1100); // 1000 owed: 10 s at 100/s
    expect(r.waitMs()).toBe(10_000);
    t = 1000; // 100 paid
    b.setRate(900);
    expect(b.rate).toBe(900);
    expect(r.waitMs()).toBe(1000); // the 900 left at 900/s
    // Tokens saved are capped to the new burst.
    t = 100_000;
    b.setRate(10);
    expect(b.reserve(10).waitMs()).toBe(0);
    expect(b.reserve(10).waitMs()).toBe(1000);
  });

  it("take() and reserve() share the tokens", () => {
    const b = new TokenBucket(10, 3, () => 0);
    expect(b.reserve(2).waitMs()).toBe(0);
    expect([b.take(), b.take()]).toEqual([true, false]);
    expect(b.admitted).toBe(3);
  });
});

describe("paced", () => {
  it("returns at once within the burst, waits out a debt until the rate is raised, and stops waiting on abort", async () => {
    const b = new TokenBucket(1, 1);
    await paced(b, 1);
    let done = false;
    // 4 MiB at 1 B/s: weeks, unless the rate changes.
    const slow = paced(b, 4 << 20).then(() => (done = true));
    await Promise.resolve();
    expect(done).toBe(false);
    b.setRate(1e12);
    await slow;
    expect(b.admitted).toBe(1 + (4 << 20));

    b.setRate(1);
    const ac = new AbortController();
    const stopped = paced(b, 4 << 20, ac.signal);
    ac.abort();
    await stopped;
  });
});

describe("daemon bandwidth keys", () => {
  const resolve = (yaml: string) => resolveDaemonConfig(parseConfig(DaemonConfigSchema, yaml, "dfdaemon.yaml")).resolved;

  it("reads download.bandwidthLimit and proxy.prefetchBandwidthLimit in bytes/s, Dragonfly's defaults otherwise", () => {
    expect(resolve("{}")).toMatchObject({ downloadBandwidthBytes: 50e9, prefetchBandwidthBytes: 10e9 });
    expect(resolve("download: { bandwidthLimit: 100MiB }\nproxy: { prefetchBandwidthLimit: 20MB }")).toMatchObject({ downloadBandwidthBytes: 100 * 1024 * 1024, prefetchBandwidthBytes: 20e6 });
  });

  it("refuses a limit of 0, which would stop every download rather than lift the limit", () => {
    expect(() => resolve("download: { bandwidthLimit: 0B }")).toThrow('download.bandwidthLimit must be at least 1B (got "0B")');
    expect(() => resolve("proxy: { prefetchBandwidthLimit: \"0\" }")).toThrow(/proxy\.prefetchBandwidthLimit must be at least 1B/);
  });
});
