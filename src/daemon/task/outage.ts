// Riding out an origin's temporary outage during back-to-source (#20 "all sources offline, then
// back"): refused or broken connections, 408, 429 and 5xx are retried with backoff (0.5 s
// doubling to 8 s apart) instead of failing the download at the first one. A seed peer that
// gave up at once would fail the task for every peer waiting on it, and the pieces that landed
// are kept, so the download resumes where it stopped. The retries are bounded by
// backend.retryTimeout, counted from the first failure, and by the download's own timeout
// (Download.timeout, dfget --timeout), whichever ends first; the final error says how long the
// origin failed and which bound ended it. The origin's answers (other 4xx) end at once.
// backend.maxRetries (Dragonfly's: retries of one request, right away) still applies inside.
import type { Logger } from "../../common/logger.js";
import { BackendError } from "../backend/index.js";

const FIRST_PAUSE_MS = 500;
const MAX_PAUSE_MS = 8000;
const MIN_PAUSE_MS = 100;
/** Time kept after the last pause for the last try and its answer. */
const LAST_TRY_MS = 1000;

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

export interface OutageBounds {
  /** backend.retryTimeout. */
  budgetMs: number;
  /** When the download's own timeout passes (epoch ms), if it has one. */
  deadline?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Stop retrying (another worker failed the download). */
  givenUp?: () => boolean;
  url: string;
  log: Logger;
}

/** The origin failure inside `e`, if any: a BackendError, or the one a pipeline error wraps. */
export type BackendOf = (e: unknown) => BackendError | undefined;

export async function rideOutage<T>(fetch: () => Promise<T>, bounds: OutageBounds, backendOf: BackendOf): Promise<T> {
  let since: number | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch();
    } catch (e) {
      const be = backendOf(e);
      if (!be?.temporary || bounds.signal?.aborted || bounds.givenUp?.()) throw e;
      const now = Date.now();
      since ??= now;
      const retryEnd = since + bounds.budgetMs;
      const byDeadline = bounds.deadline !== undefined && bounds.deadline <= retryEnd;
      const end = byDeadline ? (bounds.deadline as number) : retryEnd;
      // The last pause is cut short so that one more try, and the error if it fails too, come
      // before the bound: the requester hears why before its own deadline does.
      const pauseMs = Math.min(MAX_PAUSE_MS, FIRST_PAUSE_MS * 2 ** (attempt - 1), end - now - LAST_TRY_MS);
      if (pauseMs < MIN_PAUSE_MS) {
        const bound = byDeadline ? "the download's timeout" : `backend.retryTimeout (${Math.round(bounds.budgetMs / 1000)}s)`;
        bounds.log.warn({ url: bounds.url, attempts: attempt, err: be.message }, "origin kept failing; giving up");
        throw new BackendError(`${be.message} (the origin has failed for ${Math.round((now - since) / 1000)}s, ${attempt} attempts; giving up before ${bound})`, be.statusCode, be.headers, false);
      }
      if (attempt === 1) bounds.log.warn({ url: bounds.url, err: be.message }, "origin failed; retrying with backoff");
      await pause(pauseMs, bounds.signal);
      if (bounds.signal?.aborted) throw e;
    }
  }
}
