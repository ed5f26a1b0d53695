// Local storage faults during one download (issue #20): ENOSPC and EIO from the native store
// (the preallocation of a new task, a piece write, a metadata append) arrive as the structured
// codes DF_NO_SPACE and DF_DEVICE_IO, or as Node's ENOSPC/EIO from the task's JSON record.
//
// ENOSPC stops the download attempt at once (every other piece would fail the same way); the
// task manager then makes room by evicting cached tasks and tries once more. EIO loses the bytes
// of one write: the piece stays missing and is fetched again, from another parent or the origin.
// A device that fails DEVICE_IO_LIMIT writes of one task fails its download: by then the pieces
// it holds are suspect too, and a download that goes on rewriting them never ends.
import type { Logger } from "../../common/logger.js";
import { errorMessage } from "../../common/errors.js";

/** EIO writes one download survives; the next one fails it. */
export const DEVICE_IO_LIMIT = 3;

function codeOf(e: unknown): string | undefined {
  const code: unknown = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : undefined;
}

const messageOf = (e: unknown) => errorMessage(e);

/** The filesystem is full (or the quota spent): from the native store or from node:fs. */
export function isNoSpace(e: unknown): boolean {
  const c = codeOf(e);
  return c === "DF_NO_SPACE" || c === "ENOSPC" || c === "EDQUOT";
}

/** The storage device failed an I/O on our files. */
export function isDeviceIo(e: unknown): boolean {
  const c = codeOf(e);
  return c === "DF_DEVICE_IO" || c === "EIO";
}

/** What to do about a piece whose fetch or write failed. */
export type FaultVerdict =
  /** EIO within the budget: the piece is missing again; fetch it again. */
  | "refetch"
  /** ENOSPC, or the EIO budget is spent: the attempt is aborted. */
  | "stop"
  /** Not a storage fault: the caller's usual handling (another parent, the origin, failure). */
  | "other";

export class DiskFaults {
  /** EIO writes so far, over every attempt of this download. */
  deviceErrors = 0;
  /** The ENOSPC that stopped the current attempt, if one did. */
  noSpace: Error | undefined;
  /** Set once the EIO budget is spent: what the download fails with. */
  exhausted: Error | undefined;
  private ctl = new AbortController();

  constructor(
    private readonly taskId: string,
    /** The data directory the task lives in (named in errors). */
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /**
   * Starts an attempt: the signal it runs under fires when the requester gives up or when a
   * storage fault stops the attempt, so every piece in flight stops with it.
   */
  attempt(requester: AbortSignal | undefined): AbortSignal {
    this.ctl = new AbortController();
    this.noSpace = undefined;
    return requester ? AbortSignal.any([requester, this.ctl.signal]) : this.ctl.signal;
  }

  /** Classifies a failed piece fetch or write; stops the attempt when it must. */
  observe(e: unknown): FaultVerdict {
    if (isNoSpace(e)) {
      if (!this.noSpace) {
        this.noSpace = e instanceof Error ? e : new Error(messageOf(e));
        this.ctl.abort(new Error(`no space left in ${this.dir}: ${messageOf(e)}`));
      }
      return "stop";
    }
    if (!isDeviceIo(e)) return "other";
    if (this.exhausted) return "stop";
    this.deviceErrors++;
    if (this.deviceErrors < DEVICE_IO_LIMIT) {
      this.log.warn({ taskId: this.taskId, dir: this.dir, errors: this.deviceErrors, err: messageOf(e) }, "storage device failed a piece write (EIO); fetching the piece again");
      return "refetch";
    }
    this.exhausted = new Error(`task ${this.taskId}: the storage device under ${this.dir} failed ${this.deviceErrors} piece writes with an I/O error (EIO), the last: ${messageOf(e)}`);
    this.ctl.abort(this.exhausted);
    return "stop";
  }
}
