// dfdaemon.v2.DfdaemonUpload: what other peers and the scheduler may ask of us over the network.
// A remote caller never chooses a path on our disk: output paths are refused here and task ids
// are validated before they touch storage.
import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { isTaskId } from "../../common/ids.js";
import type { Logger } from "../../common/logger.js";
import type { Host, Task } from "../../gen/common/v2/common.js";
import type { DeleteTaskRequest, DownloadTaskRequest, DownloadTaskResponse, StatLocalTaskRequest, StatLocalTaskResponse, StatTaskRequest, SyncHostRequest, SyncPiecesRequest, SyncPiecesResponse } from "../../gen/dfdaemon/v2/dfdaemon.js";
import type { Empty } from "../../gen/google/protobuf/empty.js";
import { failStream, grpcError, toGrpcError } from "../grpc/errors.js";
import { streamDownload } from "../grpc/download-stream.js";
import type { Storage } from "../storage/storage.js";
import type { TaskStore } from "../storage/types.js";
import type { TaskManager } from "../task/manager.js";
import { toProtoPiece } from "../task/manager.js";
import { TrafficType } from "../../gen/common/v2/common.js";
import type { PieceSpreader, Subscriber } from "./spread.js";
import { errorMessage } from "../../common/errors.js";
import type { BackendRegistry } from "../backend/index.js";
import { listTaskEntriesHandler } from "../download/list-entries.js";

export interface UploadServiceDeps {
  storage: Storage;
  tasks: TaskManager;
  log: Logger;
  hostId: string;
  /** Advertised in SyncPieces so children know where to fetch piece bytes. */
  ip: string;
  piecePort: () => number;
  /** Our vortex QUIC port, advertised next to the TCP one; undefined when QUIC is off. */
  quicPort?: () => number | undefined;
  /** Our Host as SyncHost streams it (network figures sampled each second). */
  host: () => Host;
  seedPeer: boolean;
  newPeerId: () => string;
  /** How often SyncHost samples; Dragonfly uses 1 s. */
  syncHostIntervalMs?: number;
  /** Offers fresh pieces to one child at a time (absent: to every child at once). */
  spreader?: PieceSpreader;
  /** The SSRF-checked backends of remote requests: a manager's directory preheat lists through them. */
  backends: BackendRegistry;
}

export function localTaskToProto(t: TaskStore): Task {
  return {
    id: t.id,
    type: 0,
    url: t.meta.url,
    digest: t.meta.digest,
    tag: t.meta.tag,
    application: t.meta.application,
    filteredQueryParams: t.meta.filteredQueryParams,
    requestHeader: {},
    contentLength: t.meta.contentLength,
    pieceCount: t.meta.pieceCount,
    sizeScope: 0,
    pieces: t.finished().map((p) => toProtoPiece(p, p.parentId ? TrafficType.REMOTE_PEER : TrafficType.BACK_TO_SOURCE)),
    state: t.meta.state === "succeeded" ? "Succeeded" : t.meta.state === "failed" ? "Failed" : "Running",
    peerCount: 0,
    hasAvailablePeer: t.meta.state === "succeeded",
    createdAt: new Date(t.meta.createdAt),
    updatedAt: new Date(t.meta.updatedAt),
  };
}

export function localTaskStat(t: TaskStore): StatLocalTaskResponse {
  return {
    taskId: t.id,
    pieceLength: t.meta.pieceLength,
    contentLength: t.meta.contentLength,
    responseHeader: t.meta.responseHeader,
    uploadingCount: 0,
    uploadedCount: t.meta.uploadedCount,
    createdAt: new Date(t.meta.createdAt),
    updatedAt: new Date(t.meta.updatedAt),
    finishedAt: t.meta.finishedAt ? new Date(t.meta.finishedAt) : undefined,
    failedAt: t.meta.state === "failed" ? new Date(t.meta.updatedAt) : undefined,
  };
}

export class UploadService {
  constructor(private readonly deps: UploadServiceDeps) {}

  private task(taskId: string): TaskStore {
    if (!isTaskId(taskId)) throw Object.assign(new TypeError(`invalid task id "${taskId.slice(0, 80)}"`), { grpc: status.INVALID_ARGUMENT });
    const t = this.deps.storage.get(taskId);
    if (!t) throw Object.assign(new Error(`task ${taskId} not found`), { grpc: status.NOT_FOUND });
    return t;
  }

  private fail(e: unknown) {
    const code = (e as { grpc?: status }).grpc;
    return code !== undefined ? grpcError(code, (e as Error).message) : toGrpcError(e);
  }

  /**
   * Streams each interested piece once it is finished here, including pieces that land while
   * the stream is open; ends when all were sent. The child learns our piece port from it.
   */
  syncPieces(call: ServerWritableStream<SyncPiecesRequest, SyncPiecesResponse>): void {
    let task: TaskStore;
    try {
      task = this.task(call.request.taskId);
      const nums = call.request.interestedPieceNumbers;
      if (nums.length === 0) throw Object.assign(new TypeError("interested_piece_numbers must not be empty"), { grpc: status.INVALID_ARGUMENT });
      const bad = nums.find((n) => !Number.isInteger(n) || n < 0 || n >= task.meta.pieceCount);
      if (bad !== undefined) throw Object.assign(new RangeError(`piece ${bad} is outside task ${task.id} (${task.meta.pieceCount} pieces)`), { grpc: status.INVALID_ARGUMENT });
      if (task.meta.state === "failed") throw Object.assign(new Error(`task ${task.id} failed`), { grpc: status.FAILED_PRECONDITION });
    } catch (e) {
      failStream(call, this.fail(e));
      return;
    }
    const pending = new Set(call.request.interestedPieceNumbers);
    // A child is downloading the task from us: GC leaves it alone while the stream is open.
    const release = this.deps.tasks.uploads.open(task.id);
    const port = this.deps.piecePort();
    // A Dragonfly child set to `download.protocol: quic` fetches from a parent only through
    // the quic_port of this reply; without one it falls back to nothing that works.
    const quicPort = this.deps.quicPort?.();
    const spreader = this.deps.spreader;
    const sub: Subscriber = { wants: (n) => pending.has(n) };
    const unsubscribe = spreader?.subscribe(task.id, sub);
    const held = new Map<number, NodeJS.Timeout>();
    const send = (n: number) => {
      if (!pending.has(n)) return;
      const wait = spreader?.delay(task.id, n, sub) ?? 0;
      const timer = held.get(n);
      if (wait > 0) {
        if (!timer) {
          const t = setTimeout(() => {
            held.delete(n);
            send(n);
            if (pending.size === 0) finish();
          }, wait);
          held.set(n, t);
        }
        return;
      }
      // Released early (the child holding the turn left): the periodic pass below gets here.
      if (timer) {
        clearTimeout(timer);
        held.delete(n);
      }
      const p = task.piece(n);
      if (!p) return;
      pending.delete(n);
      call.write({ number: p.number, offset: p.offset, length: p.length, ip: this.deps.ip, tcpPort: port, quicPort });
    };
    // Pieces known to be finished here, from the first pass and the landing events since.
    const seen = new Set<number>();
    const onPiece = (_t: TaskStore, p: { number: number }) => {
      seen.add(p.number);
      spreader?.landed(task.id, p.number);
      send(p.number);
      if (pending.size === 0) finish();
    };
    const event = `piece:${task.id}`;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      release();
      this.deps.tasks.events.off(event, onPiece);
      clearInterval(watch);
      for (const t of held.values()) clearTimeout(t);
      held.clear();
      unsubscribe?.();
      call.end();
    };
    const catchUp = (t: TaskStore) => {
      seen.clear();
      for (const p of t.finished()) {
        seen.add(p.number);
        send(p.number);
      }
    };
    this.deps.tasks.events.on(event, onPiece);
    catchUp(task);
    // Every second: a task that stopped downloading (failed, deleted) will never produce the
    // rest; holds that ended early (the child holding the turn left) are released. Landings
    // arrive as events, so the finished pieces are listed again only when the store's count
    // differs from what this stream has seen (a piece finished without an event, or one
    // invalidated): listing them for every stream every second cost a seed peer O(children ×
    // pieces), about 3 ms per child each second for a 10 GiB task.
    const watch = setInterval(() => {
      const live = this.deps.storage.get(task.id);
      if (!live || live.meta.state === "failed") return finish();
      for (const n of [...held.keys()]) send(n);
      if (live !== task || live.finishedCount() !== seen.size) catchUp(live);
      if (pending.size === 0) finish();
    }, 1000);
    if (pending.size === 0) finish();
    call.on("cancelled", finish);
  }

  syncHost(call: ServerWritableStream<SyncHostRequest, Host>): void {
    const send = () => call.write(this.deps.host());
    send();
    const t = setInterval(send, this.deps.syncHostIntervalMs ?? 1000);
    const stop = () => clearInterval(t);
    call.on("cancelled", stop);
    call.on("close", stop);
    call.on("error", stop);
  }

  statTask(call: ServerUnaryCall<StatTaskRequest, Task>, cb: sendUnaryData<Task>): void {
    try {
      cb(null, localTaskToProto(this.task(call.request.taskId)));
    } catch (e) {
      cb(this.fail(e));
    }
  }

  statLocalTask(call: ServerUnaryCall<StatLocalTaskRequest, StatLocalTaskResponse>, cb: sendUnaryData<StatLocalTaskResponse>): void {
    try {
      cb(null, localTaskStat(this.task(call.request.taskId)));
    } catch (e) {
      cb(this.fail(e));
    }
  }

  deleteTask(call: ServerUnaryCall<DeleteTaskRequest, Empty>, cb: sendUnaryData<Empty>): void {
    try {
      const t = this.task(call.request.taskId);
      this.deps.storage.delete(t.id).then(
        () => cb(null, {}),
        (e: unknown) => cb(this.fail(e)),
      );
    } catch (e) {
      cb(this.fail(e));
    }
  }

  /** How the scheduler triggers a seed peer. Only the origin URL may be chosen remotely. */
  downloadTask(call: ServerWritableStream<DownloadTaskRequest, DownloadTaskResponse>): void {
    const d = call.request.download;
    if (d?.outputPath) {
      failStream(call, grpcError(status.INVALID_ARGUMENT, "output_path is not accepted on the upload port; only the local socket may choose output paths"));
      return;
    }
    streamDownload(call, this.deps.tasks, { hostId: this.deps.hostId, peerId: this.deps.newPeerId() }, true).then(
      () => call.end(),
      (e: unknown) => {
        this.deps.log.warn({ err: errorMessage(e), url: d?.url }, "triggered download failed");
        failStream(call, toGrpcError(e));
      },
    );
  }

  handlers(): UntypedServiceImplementation {
    return {
      syncPieces: this.syncPieces.bind(this),
      syncHost: this.syncHost.bind(this),
      statTask: this.statTask.bind(this),
      statLocalTask: this.statLocalTask.bind(this),
      deleteTask: this.deleteTask.bind(this),
      downloadTask: this.downloadTask.bind(this),
      listTaskEntries: listTaskEntriesHandler(this.deps.backends, this.deps.log, toGrpcError),
    };
  }
}
