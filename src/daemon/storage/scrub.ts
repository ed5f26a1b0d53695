// Background scrub of the cache (issue 21). A piece is verified when it lands, against the
// digest its back-to-source peer vouched for; after that, a cache hit serves whatever the disk
// gives back. Disks rot, and a task dir can be written to by something other than us, so the
// scrub re-reads finished pieces at a bounded byte rate and checks each one against the digests
// recorded when it landed (CRC-32 and BLAKE3, native verifyPiece). A piece that fails is no
// longer finished from that moment: the piece server (same process, same store instance) stops
// serving it, a cache hit is no longer a hit (the task is not whole), and the next download of
// the task fetches just that piece again from parents or the origin. The rest of the task stays.
//
// One pass walks the tasks that are neither downloading nor failed, least recently scrubbed
// first, and is paced so that it reads at most `rateBytesPerSecond` on average: the scrub must
// never compete with downloads and uploads for the disk in a way a perf engineer would notice.
import { setTimeout as sleep } from "node:timers/promises";
import { errorMessage } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import { runEvery, type Periodic } from "../../common/periodic.js";
import { isNativeError } from "../../native/index.js";
import type { DaemonMetrics } from "../metrics.js";
import type { Storage } from "./storage.js";
import type { TaskStore } from "./types.js";

export interface ScrubPolicy {
  /** Average read rate of a pass, in bytes per second; 0 turns the scrub off. */
  rateBytesPerSecond: number;
}

/** What the scrub leaves alone: tasks being downloaded (their pieces are still landing). */
export interface ScrubUsage {
  isRunning(taskId: string): boolean;
}

export interface ScrubReport {
  tasks: number;
  pieces: number;
  bytes: number;
  /** `taskId:piece` of every piece that failed its digests in this pass. */
  corrupt: string[];
}

export class Scrubber {
  /** When each task was last scrubbed to its end (ms); tasks never scrubbed go first. */
  private readonly scrubbedAt = new Map<string, number>();
  private readonly stopping = new AbortController();

  constructor(
    private readonly storage: Storage,
    private readonly usage: ScrubUsage,
    private readonly policy: ScrubPolicy,
    private readonly log: Logger,
    private readonly metrics?: DaemonMetrics,
  ) {}

  /** One pass over the cache. Resolves early, with what it did, once stop() was called. */
  async pass(): Promise<ScrubReport> {
    const report: ScrubReport = { tasks: 0, pieces: 0, bytes: 0, corrupt: [] };
    if (this.policy.rateBytesPerSecond <= 0) return report;
    const t0 = performance.now();
    const tasks = this.storage
      .list()
      .filter((t) => t.meta.state === "succeeded")
      .sort((a, b) => (this.scrubbedAt.get(a.id) ?? 0) - (this.scrubbedAt.get(b.id) ?? 0));
    for (const task of tasks) {
      if (this.stopping.signal.aborted) break;
      if (this.usage.isRunning(task.id) || this.storage.get(task.id) !== task) continue;
      if (!(await this.scrubTask(task, report, t0))) continue;
      this.scrubbedAt.set(task.id, Date.now());
      report.tasks++;
    }
    for (const id of this.scrubbedAt.keys()) if (!this.storage.get(id)) this.scrubbedAt.delete(id);
    if (report.corrupt.length > 0) this.log.warn({ corrupt: report.corrupt, pieces: report.pieces }, "scrub: pieces failed their digests and will be fetched again on the next download");
    else this.log.debug({ tasks: report.tasks, pieces: report.pieces, bytes: report.bytes }, "scrub: pass done");
    return report;
  }

  /** Verifies the task's finished pieces; false when the task went away or a download took it. */
  private async scrubTask(task: TaskStore, report: ScrubReport, t0: number): Promise<boolean> {
    for (const piece of task.finished()) {
      if (this.stopping.signal.aborted || this.usage.isRunning(task.id) || this.storage.get(task.id) !== task) return false;
      try {
        await task.verifyPiece(piece.number);
        this.metrics?.scrubPieceTotal.inc({ result: "ok" });
      } catch (e) {
        if (!(isNativeError(e) && e.code === "DF_DIGEST_MISMATCH")) {
          // Deleted by GC between the check and the read, or an I/O error: not a verdict on
          // the bytes. The next pass looks again.
          this.log.debug({ taskId: task.id, piece: piece.number, err: errorMessage(e) }, "scrub: cannot verify a piece");
          return false;
        }
        this.metrics?.scrubPieceTotal.inc({ result: "corrupt" });
        report.corrupt.push(`${task.id}:${piece.number}`);
        this.log.warn({ taskId: task.id, piece: piece.number, err: errorMessage(e) }, "scrub: piece failed its digests; it is no longer served");
      }
      report.pieces++;
      report.bytes += piece.length;
      await this.pace(report.bytes, t0);
    }
    return true;
  }

  /** Sleeps until `bytes` read since `t0` is within the rate. */
  private async pace(bytes: number, t0: number): Promise<void> {
    const due = (bytes / this.policy.rateBytesPerSecond) * 1000 - (performance.now() - t0);
    if (due <= 0) return;
    await sleep(due, undefined, { signal: this.stopping.signal }).catch(() => undefined);
  }

  /** Ends a pass in progress at its next piece. */
  stop(): void {
    this.stopping.abort();
  }
}

/** A pass every `intervalMs` (a pass still going when the next is due is left to finish). */
export function startScrub(scrubber: Scrubber, intervalMs: number, log: Logger): Periodic {
  const loop = runEvery(
    intervalMs,
    async () => void (await scrubber.pass()),
    (e: unknown) => log.warn({ err: errorMessage(e) }, "scrub failed"),
  );
  return {
    async stop() {
      scrubber.stop();
      await loop.stop();
    },
  };
}
