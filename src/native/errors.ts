// Error rules in one place. Sync calls throw errors whose `code` napi-rs already set to a
// stable DF_* string. Promise rejections from the addon can only carry napi's own status, so
// the addon prefixes their message with `[DF_*] `; `nativeAsync` moves it back into `code`.

/** Error thrown by the addon; `code` is one of the stable `DF_*` strings. */
export interface NativeError extends Error {
  code: NativeErrorCode;
  /** DF_BACKEND and DF_ORIGIN_CHANGED: the status the origin answered instead of the requested bytes. */
  statusCode?: number;
  /** DF_BACKEND and DF_ORIGIN_CHANGED: the origin's response headers (names lower-cased, repeats joined with ", "). */
  headers?: Record<string, string>;
}

export type NativeErrorCode =
  | "DF_IO"
  | "DF_INVALID_ARGUMENT"
  | "DF_NOT_FOUND"
  | "DF_UNSUPPORTED"
  | "DF_DIGEST_MISMATCH"
  | "DF_PIECE_NOT_FINISHED"
  | "DF_ABORTED"
  | "DF_TIMEOUT"
  | "DF_PROTOCOL"
  | "DF_AUTH"
  | "DF_CODEC"
  | "DF_BACKEND"
  | "DF_BUSY"
  /** The filesystem holding the task is full (ENOSPC) or the quota is spent (EDQUOT). */
  | "DF_NO_SPACE"
  /** The storage device failed an I/O on the task's files (EIO): that write's bytes are lost. */
  | "DF_DEVICE_IO"
  /** The origin answered with another version of the content than the task is pinned to. */
  | "DF_ORIGIN_CHANGED"
  /** A parent went silent: no reply within the first-byte deadline, or no byte within the stall deadline once it answered. */
  | "DF_STALLED";

export function isNativeError(e: unknown): e is NativeError {
  const code: unknown = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
  return typeof code === "string" && code.startsWith("DF_");
}

const PREFIX = /^\[(DF_[A-Z_]+)\] /;

/** An origin's answer travels as one JSON line after the message (see binding `to_napi`). */
function attachAnswer(e: NativeError): void {
  const nl = e.message.lastIndexOf("\n");
  if (nl < 0) return;
  try {
    const a = JSON.parse(e.message.slice(nl + 1)) as { statusCode?: unknown; headers?: unknown };
    if (typeof a.statusCode === "number") e.statusCode = a.statusCode;
    if (a.headers && typeof a.headers === "object") e.headers = a.headers as Record<string, string>;
    e.message = e.message.slice(0, nl);
  } catch {
    // Not an answer line: leave the message as it is.
  }
}

function normalise(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const m = PREFIX.exec(e.message);
  if (m?.[1]) {
    e.message = e.message.slice(m[0].length);
    (e as Error & { code?: string }).code = m[1];
    if (m[1] === "DF_BACKEND" || m[1] === "DF_ORIGIN_CHANGED") attachAnswer(e as NativeError);
  }
  return e;
}

/** Awaits an addon promise and rethrows its rejection with the DF_* code in `code`. */
export async function nativeAsync<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw normalise(e);
  }
}

/** Rejects at once with DF_ABORTED when the signal has already fired. */
export function abortedError(signal: AbortSignal): NativeError {
  const reason: unknown = signal.reason;
  const err = new Error(reason instanceof Error ? reason.message : "operation was aborted") as NativeError;
  err.code = "DF_ABORTED";
  return err;
}
