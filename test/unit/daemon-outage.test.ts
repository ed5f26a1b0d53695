// rideOutage: temporary origin failures are retried with backoff until the origin answers, or
// until backend.retryTimeout or the download's timeout ends it, with an error naming the bound;
// the origin's own refusals and a download stopped on purpose end at once. Fake timers: the
// pauses are the point, their lengths are read from the clock the code saw.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { BackendError } from "../../src/daemon/backend/index.js";
import { rideOutage, type OutageBounds } from "../../src/daemon/task/outage.js";

const refused = () => new BackendError("http://origin/file: connect ECONNREFUSED 127.0.0.1:9", undefined, {}, true);
const backendOf = (e: unknown) => (e instanceof BackendError ? e : undefined);
const bounds = (o: Partial<OutageBounds> = {}): OutageBounds => ({ budgetMs: 60_000, url: "http://origin/file", log: silentLogger(), ...o });

/** A fetch failing with `fail()` for its first `n` calls, recording when each call came. */
function flaky(n: number, fail: () => Error = refused) {
  const calls: number[] = [];
  return {
    calls,
    fetch: () => {
      calls.push(Date.now());
      return calls.length <= n ? Promise.reject(fail()) : Promise.resolve("bytes");
    },
  };
}

/** Runs `p` to its end with fake timers, however many pauses it takes. */
async function settle<T>(p: Promise<T>): Promise<{ value?: T; error?: Error }> {
  const out = p.then(
    (value) => ({ value }),
    (error: Error) => ({ error }),
  );
  await vi.runAllTimersAsync();
  return out;
}

beforeEach(() => void vi.useFakeTimers({ now: 0 }));
afterEach(() => void vi.useRealTimers());

describe("rideOutage", () => {
  it("retries refused connections with doubling pauses, capped at 8 s, until the origin is back", async () => {
    const f = flaky(6);
    expect(await settle(rideOutage(f.fetch, bounds(), backendOf))).toEqual({ value: "bytes" });
    const pauses = f.calls.slice(1).map((t, i) => t - f.calls[i]!);
    expect(pauses).toEqual([500, 1000, 2000, 4000, 8000, 8000]);
  });

  it("gives up at backend.retryTimeout, saying so, and the error is no longer worth retrying", async () => {
    const f = flaky(Infinity);
    const r = await settle(rideOutage(f.fetch, bounds({ budgetMs: 10_000 }), backendOf));
    expect(r.error).toBeInstanceOf(BackendError);
    expect(r.error?.message).toMatch(/^http:\/\/origin\/file: connect ECONNREFUSED .* giving up before backend\.retryTimeout \(10s\)\)$/);
    expect((r.error as BackendError).temporary).toBe(false);
    // Never past the bound.
    expect(f.calls.at(-1)).toBeLessThanOrEqual(10_000);
  });

  it("gives up before the download's timeout when that comes first", async () => {
    const f = flaky(Infinity);
    const r = await settle(rideOutage(f.fetch, bounds({ deadline: 12_000 }), backendOf));
    expect(r.error?.message).toContain("giving up before the download's timeout");
    expect(f.calls.at(-1)).toBeLessThan(12_000);
  });

  it("ends at once on the origin's refusal (404) and on a download stopped on purpose", async () => {
    const missing = flaky(Infinity, () => new BackendError("http://origin/file: origin answered 404", 404));
    const r = await settle(rideOutage(missing.fetch, bounds(), backendOf));
    expect(r.error?.message).toBe("http://origin/file: origin answered 404");
    expect(missing.calls).toHaveLength(1);

    const stop = new AbortController();
    const f = flaky(Infinity);
    const p = rideOutage(f.fetch, bounds({ signal: stop.signal }), backendOf).catch((e: unknown) => e as Error);
    await vi.advanceTimersByTimeAsync(100);
    stop.abort();
    // Ends in the pause, without waiting it out.
    const stopped = (await p) as Error;
    expect(stopped.message).toContain("ECONNREFUSED");
    expect(stopped.message).not.toContain("giving up");
    expect(f.calls).toHaveLength(1);
  });
});
