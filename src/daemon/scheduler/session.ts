// One AnnouncePeer stream for one download: typed senders for each request the scheduler
// expects (wire-protocol.md §3.2) and an async queue of its responses, so the pipeline reads
// the conversation top to bottom instead of juggling stream events.
import { Metadata, type ClientDuplexStream } from "@grpc/grpc-js";
import type { Download, Peer, Piece } from "../../gen/common/v2/common.js";
import type { AnnouncePeerRequest, AnnouncePeerResponse, SchedulerClient } from "../../gen/scheduler/v2/scheduler.js";

export type SchedulerResponse = NonNullable<AnnouncePeerResponse["response"]>;
type Request = NonNullable<AnnouncePeerRequest["request"]>;

/** Where back-to-source pieces are reported: a session, or whichever session follows the task across schedulers. */
export interface BackToSourceReports {
  pieceBackToSourceFinished(piece: Piece): void;
}

export class AnnouncePeerSession implements BackToSourceReports {
  private readonly stream: ClientDuplexStream<AnnouncePeerRequest, AnnouncePeerResponse>;
  private readonly queue: SchedulerResponse[] = [];
  private waiter: ((v: void) => void) | undefined;
  private error: Error | undefined;
  private ended = false;

  constructor(
    client: InstanceType<typeof SchedulerClient>,
    private readonly ids: { hostId: string; taskId: string; peerId: string },
  ) {
    this.stream = client.announcePeer(new Metadata());
    this.stream.on("data", (res: AnnouncePeerResponse) => {
      if (res.response) this.queue.push(res.response);
      this.wake();
    });
    this.stream.on("error", (e: Error) => {
      this.error = e;
      this.wake();
    });
    this.stream.on("end", () => {
      this.ended = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Next response, or undefined when the scheduler ended the stream; throws its error. */
  async next(timeoutMs: number): Promise<SchedulerResponse | undefined> {
    for (;;) {
      const r = this.queue.shift();
      if (r) return r;
      if (this.error) throw this.error;
      if (this.ended) return undefined;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve, reject) => {
        this.waiter = resolve;
        timer = setTimeout(() => reject(new Error(`scheduler sent nothing for ${Math.round(timeoutMs / 1000)}s`)), timeoutMs);
      }).finally(() => clearTimeout(timer));
    }
  }

  /** Responses that arrived without being waited for (e.g. a reschedule answer mid-download). */
  poll(): SchedulerResponse | undefined {
    if (this.error) throw this.error;
    return this.queue.shift();
  }

  get streamError(): Error | undefined {
    return this.error;
  }

  /** Calls `cb` once when the stream fails (at once if it has); our own cancel() counts too. */
  onStreamError(cb: (e: Error) => void): void {
    const failed = this.error;
    if (failed) queueMicrotask(() => cb(failed));
    else this.stream.once("error", cb);
  }

  private send(request: Request): void {
    if (this.error || this.ended) return;
    this.stream.write({ ...this.ids, request });
  }

  register(download: Download): void {
    this.send({ $case: "registerPeerRequest", registerPeerRequest: { download } });
  }
  started(): void {
    this.send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
  }
  backToSourceStarted(): void {
    this.send({ $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} });
  }
  pieceFinished(piece: Piece): void {
    this.send({ $case: "downloadPieceFinishedRequest", downloadPieceFinishedRequest: { piece } });
  }
  pieceBackToSourceFinished(piece: Piece): void {
    this.send({ $case: "downloadPieceBackToSourceFinishedRequest", downloadPieceBackToSourceFinishedRequest: { piece } });
  }
  pieceFailed(pieceNumber: number, parentId: string, temporary: boolean): void {
    this.send({ $case: "downloadPieceFailedRequest", downloadPieceFailedRequest: { pieceNumber, parentId, temporary } });
  }
  pieceBackToSourceFailed(pieceNumber: number | undefined, error: { message: string; statusCode?: number | undefined; header?: Record<string, string> }): void {
    const response =
      error.statusCode !== undefined
        ? { $case: "backend" as const, backend: { message: error.message, header: error.header ?? {}, statusCode: error.statusCode } }
        : { $case: "unknown" as const, unknown: { message: error.message } };
    this.send({ $case: "downloadPieceBackToSourceFailedRequest", downloadPieceBackToSourceFailedRequest: { pieceNumber, response } });
  }
  reschedule(candidateParents: Peer[], description: string): void {
    this.send({ $case: "reschedulePeerRequest", reschedulePeerRequest: { candidateParents, description } });
  }
  finished(): void {
    this.send({ $case: "downloadPeerFinishedRequest", downloadPeerFinishedRequest: {} });
  }
  backToSourceFinished(): void {
    this.send({ $case: "downloadPeerBackToSourceFinishedRequest", downloadPeerBackToSourceFinishedRequest: {} });
  }
  peerFailed(description: string): void {
    this.send({ $case: "downloadPeerFailedRequest", downloadPeerFailedRequest: { description } });
  }
  backToSourceFailed(description: string): void {
    this.send({ $case: "downloadPeerBackToSourceFailedRequest", downloadPeerBackToSourceFailedRequest: { description } });
  }

  /** Half-closes our side and lets the scheduler finish; never throws. */
  close(): void {
    if (!this.ended && !this.error) this.stream.end();
  }

  cancel(): void {
    this.stream.cancel();
  }
}
