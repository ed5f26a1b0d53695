// What a failed download leaves behind (issue #20). A failed task keeps its directory only when
// a later download of it can resume from the pieces: the failure was transient (the origin or
// the network down mid-way, the scheduler gone, the requester gave up) and at least one piece
// is verified. Every other failure removes the task's directory and native files at once:
// - no verified piece: nothing to resume, only preallocated bytes and empty files;
// - no space (ENOSPC): those bytes are what the disk lacks, and keeping them would fail the
//   next download too;
// - device errors (the EIO budget spent): the pieces on that device are suspect;
// - wrong content (a whole-content digest mismatch, an invalid request): the pieces do not
//   make the content that was asked for;
// - the origin's refusal (a 4xx other than 408/429): the content is not there, or not for us.
// A kept task is the first to go under disk pressure (gc.ts `evictionOrder`) and expires by the
// TTL like any other. A task children are still downloading from is removed once they are done.

export type FailureCause = "transient" | "no_space" | "device_io" | "wrong_content" | "refused";

export interface FailedDownload {
  /** DownloadError's kind. */
  kind: string;
  /** The origin's status, when the origin answered something other than the content. */
  originStatus?: number | undefined;
  /** The last attempt stopped on ENOSPC. */
  noSpace: boolean;
  /** The EIO budget was spent. */
  deviceIo: boolean;
}

export function failureCause(f: FailedDownload): FailureCause {
  if (f.noSpace || f.kind === "no_space") return "no_space";
  if (f.deviceIo) return "device_io";
  if (f.kind === "invalid") return "wrong_content";
  const s = f.originStatus;
  if (f.kind === "not_found" || (s !== undefined && s >= 400 && s < 500 && s !== 408 && s !== 429)) return "refused";
  return "transient";
}

/** Whether a failed task's pieces are kept for a resume (else the task is removed). */
export function keepForResume(verifiedPieces: number, cause: FailureCause): boolean {
  return cause === "transient" && verifiedPieces > 0;
}
