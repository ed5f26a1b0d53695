// Streaming origin bodies: one ranged GET whose bytes the caller reads in order into its own
// Buffers (to pass them on while it stores them), instead of one request per piece.
import { binding, type Binding } from "./binding.js";
import { abortedError, nativeAsync } from "./errors.js";
import type { NativeOriginPin } from "./store.js";

export interface OpenOriginBodyOptions {
  /** The origin's resolved address `ip:port` (`[v6]:port`): the caller resolves DNS and applies its SSRF policy. */
  addr: string;
  /** Host header value (`name[:port]`). */
  host: string;
  /** Request target (path and query, percent-encoded), starting with `/`. */
  path: string;
  /** Extra request headers; Host, Range, Connection, framing and precondition headers are refused. */
  headers?: Record<string, string>;
  /** The content version the body must be of (see FetchFromOriginOptions.pin); DF_ORIGIN_CHANGED otherwise. */
  pin?: NativeOriginPin;
  /** The range asked for: `length` bytes from `offset`. */
  offset: number;
  length: number;
  /** Length of the whole content; the origin's Content-Range must agree. */
  contentLength: number;
  connectTimeoutMs?: number;
  /** Bound on each wait for the origin; default 60 s. */
  readTimeoutMs?: number;
}

export interface OriginBody {
  /** Bytes of the range not read yet. */
  readonly remaining: number;
  /** Fills `dst` with the next `dst.length` bytes; `dst` must not be touched until it settles. */
  read(dst: Buffer): Promise<void>;
  /** Drops the connection; a body read to its end already went back to the pool. */
  close(): void;
}

/**
 * Sends the ranged GET; resolves once the answer's head checked out. Rejects with DF_BACKEND
 * (carrying `statusCode` and `headers`) for any other answer, DF_ORIGIN_CHANGED (likewise) for
 * another version than `pin`, DF_IO/DF_TIMEOUT for network trouble. The signal aborts the request and every later read.
 */
export async function openOriginBody(options: OpenOriginBodyOptions, signal?: AbortSignal): Promise<OriginBody> {
  if (signal?.aborted) throw abortedError(signal);
  const token = new binding.CancelToken();
  const onAbort = (): void => token.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  const release = (): void => signal?.removeEventListener("abort", onAbort);
  let inner: Binding.OriginBody;
  try {
    inner = await nativeAsync(binding.openOriginBody(options, token));
  } catch (e) {
    release();
    throw e;
  }
  return {
    get remaining() {
      return inner.remaining;
    },
    async read(dst: Buffer): Promise<void> {
      try {
        await nativeAsync(inner.read(dst));
      } catch (e) {
        release();
        throw e;
      }
      if (inner.remaining === 0) release();
    },
    close(): void {
      release();
      inner.close();
    },
  };
}
