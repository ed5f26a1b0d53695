// The output of a task sealed at rest, for a caller with the daemon's own uid, written while
// the task downloads. A temporary file beside the output (owner-only) is attached to the
// task's store as it starts (TaskStore.teePlain), so each piece that lands is written there in
// plain from the bytes in hand, before it is sealed; otherwise every piece would be read back
// from the disk (the store writes with O_DIRECT) and opened again once the download is done,
// which cost 1-3 s per GiB here (bench dfget-p2p-encrypted-1g). Pieces the store held already,
// and any the tee missed, are filled from the store at the end; then the file is put in place
// like any output (output.ts), or removed when anything failed.
import { closeSync, constants, fchmodSync, openSync, unlinkSync } from "node:fs";
import type { TaskStore } from "../storage/types.js";
import { fdSink, outputFailure, placeOutput, SEALED_OUTPUT_MODE, tempBeside } from "./output.js";

export class SealedOutput {
  private open = true;

  private constructor(
    private readonly tmp: string,
    private readonly fd: number,
    private readonly detach: () => number[],
  ) {}

  /**
   * Creates the temporary file and attaches it to `task`: synchronous, so that it is in place
   * before the task's first piece is asked for (TaskManager's onStarted runs before the fill).
   */
  static begin(task: TaskStore, path: string): SealedOutput {
    const tmp = tempBeside(path);
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, SEALED_OUTPUT_MODE);
    try {
      return new SealedOutput(tmp, fd, task.teePlain(fd));
    } catch (e) {
      closeSync(fd);
      unlinkSync(tmp);
      throw e;
    }
  }

  /**
   * Fills what the tee did not get from `task` (the finished download) and puts the file at
   * `path`; returns how many pieces came from the tee.
   */
  async finish(task: TaskStore, path: string, overwrite: boolean): Promise<number> {
    try {
      const teed = new Set(this.detach());
      await task.writePlain(fdSink(this.fd), teed);
      // The umask may have taken bits away, never added: set exactly.
      fchmodSync(this.fd, SEALED_OUTPUT_MODE);
      this.close();
      await placeOutput(this.tmp, path, overwrite);
      return teed.size;
    } catch (e) {
      this.abandon();
      throw outputFailure(e, path);
    }
  }

  /** Detaches and removes the temporary file (the download failed, or restarted as another task). */
  abandon(): void {
    this.detach();
    this.close();
    try {
      unlinkSync(this.tmp);
    } catch {
      // Gone already (placed, or never linked): nothing is left either way.
    }
  }

  private close(): void {
    if (!this.open) return;
    this.open = false;
    closeSync(this.fd);
  }
}
