// dfdaemon.v2.DfdaemonDownload on the local unix socket: what dfget, dfcache and dfctl ask.
// Only this service may choose an output path, because only local users reach the socket; an
// output path is written with the rights of the user who called (caller-output.ts), known from
// the socket's SO_PEERCRED (grpc/unix-callers.ts).
import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { isTaskId } from "../../common/ids.js";
import type { Logger } from "../../common/logger.js";
import type { Task } from "../../gen/common/v2/common.js";
import type { BackendRegistry } from "../backend/index.js";
import type { DeleteLocalTaskRequest, DeleteTaskRequest, DownloadTaskRequest, DownloadTaskResponse, ListLocalTasksRequest, ListLocalTasksResponse, StatLocalTaskRequest, StatLocalTaskResponse, StatTaskRequest } from "../../gen/dfdaemon/v2/dfdaemon.js";
import type { Empty } from "../../gen/google/protobuf/empty.js";
import { failStream, grpcError, toGrpcError } from "../grpc/errors.js";
import { streamDownload } from "../grpc/download-stream.js";
import type { Storage } from "../storage/storage.js";
import type { PlainSink, TaskStore } from "../storage/types.js";
import type { TaskManager } from "../task/manager.js";
import { localTaskStat, localTaskToProto } from "../upload/service.js";
import { checkOutputPath, OutputError, writeOutput } from "./output.js";
import { callerOf, type Caller } from "./caller-access.js";
import { checkCallerOutputPath, isOtherUser, writeCallerOutput } from "./caller-output.js";
import type { PeerCredentials } from "../../native/index.js";
import { errorMessage } from "../../common/errors.js";
import { SealedOutput } from "./sealed-output.js";
import { listTaskEntriesHandler } from "./list-entries.js";

export interface DownloadServiceDeps {
  storage: Storage;
  /** The local user's back-to-source backends, for listing directories (ListTaskEntries). */
  backends: BackendRegistry;
  tasks: TaskManager;
  log: Logger;
  hostId: string;
  newPeerId: () => string;
  /** Who is calling, from the socket the call came on; undefined when that is unknown. */
  callerOf: (call: { getPeer(): string }) => PeerCredentials | undefined;
}

export class DownloadService {
  constructor(private readonly deps: DownloadServiceDeps) {}

  private lookup(taskId: string): TaskStore {
    if (!isTaskId(taskId)) throw new OutputError(`invalid task id "${taskId.slice(0, 80)}"`);
    const t = this.deps.storage.get(taskId);
    if (!t) throw Object.assign(new Error(`task ${taskId} not found`), { notFound: true });
    return t;
  }

  private fail(e: unknown) {
    if ((e as { notFound?: boolean }).notFound) return grpcError(status.NOT_FOUND, (e as Error).message);
    if (e instanceof OutputError) return grpcError(e.denied ? status.PERMISSION_DENIED : status.INVALID_ARGUMENT, e.message);
    return toGrpcError(e);
  }

  downloadTask(call: ServerWritableStream<DownloadTaskRequest, DownloadTaskResponse>): void {
    const d = call.request.download;
    const cred = this.deps.callerOf(call);
    const run = async () => {
      if (!d) throw new OutputError("download is required");
      const opts = { overwrite: d.overwrite, forceHardLink: d.forceHardLink };
      // Another user's output is checked and written with that user's rights; the daemon's own
      // uid keeps the hard-link path. Without credentials no file is written for anyone.
      let other: Caller | undefined;
      if (d.outputPath) {
        if (!cred) throw new OutputError(`cannot tell who is calling, so ${d.outputPath} is not written: output paths are only written for callers on the daemon's unix socket`, true);
        if (isOtherUser(cred.uid)) other = await callerOf(cred);
        await (other ? checkCallerOutputPath(d.outputPath, opts, other) : checkOutputPath(d.outputPath, d.overwrite));
      }
      // The daemon's own uid gets a sealed task's output written as the pieces land.
      let sealed: SealedOutput | undefined;
      const path = d.outputPath;
      const teeOutput = (t: TaskStore) => {
        sealed?.abandon();
        sealed = undefined;
        if (!path || other || d.forceHardLink || !t.meta.sealed) return;
        try {
          sealed = SealedOutput.begin(t, path);
        } catch (e) {
          // The output is then written after the download (writeOutput), which reports a path that cannot be written.
          this.deps.log.debug({ path, err: errorMessage(e) }, "cannot write a sealed task's output as it downloads");
        }
      };
      let task: TaskStore;
      try {
        task = await streamDownload(call, this.deps.tasks, { hostId: this.deps.hostId, peerId: this.deps.newPeerId() }, false, teeOutput);
      } catch (e) {
        sealed?.abandon();
        throw e;
      }
      if (!path) return;
      if (sealed) {
        const teed = await sealed.finish(task, path, d.overwrite);
        this.deps.log.debug({ taskId: task.id, path, pieces: task.meta.pieceCount, teed }, "sealed task written out as it downloaded");
        return;
      }
      // A task sealed at rest is written from its opened pieces; any other is linked or copied.
      const source = { contentPath: task.contentPath, writePlain: task.meta.sealed ? (sink: PlainSink) => task.writePlain(sink) : undefined };
      await (other ? writeCallerOutput(source, path, opts, other) : writeOutput(source, path, opts));
    };
    run().then(
      () => call.end(),
      (e: unknown) => {
        this.deps.log.info({ url: d?.url, caller: cred, err: errorMessage(e) }, "download failed");
        failStream(call, this.fail(e));
      },
    );
  }

  statTask(call: ServerUnaryCall<StatTaskRequest, Task>, cb: sendUnaryData<Task>): void {
    try {
      cb(null, localTaskToProto(this.lookup(call.request.taskId)));
    } catch (e) {
      cb(this.fail(e));
    }
  }

  statLocalTask(call: ServerUnaryCall<StatLocalTaskRequest, StatLocalTaskResponse>, cb: sendUnaryData<StatLocalTaskResponse>): void {
    try {
      cb(null, localTaskStat(this.lookup(call.request.taskId)));
    } catch (e) {
      cb(this.fail(e));
    }
  }

  listLocalTasks(_call: ServerUnaryCall<ListLocalTasksRequest, ListLocalTasksResponse>, cb: sendUnaryData<ListLocalTasksResponse>): void {
    cb(null, { tasks: this.deps.storage.list().map(localTaskStat) });
  }

  private remove(taskId: string, cb: sendUnaryData<Empty>): void {
    try {
      const t = this.lookup(taskId);
      this.deps.storage.delete(t.id).then(
        () => cb(null, {}),
        (e: unknown) => cb(this.fail(e)),
      );
    } catch (e) {
      cb(this.fail(e));
    }
  }

  deleteTask(call: ServerUnaryCall<DeleteTaskRequest, Empty>, cb: sendUnaryData<Empty>): void {
    this.remove(call.request.taskId, cb);
  }

  deleteLocalTask(call: ServerUnaryCall<DeleteLocalTaskRequest, Empty>, cb: sendUnaryData<Empty>): void {
    this.remove(call.request.taskId, cb);
  }

  handlers(): UntypedServiceImplementation {
    return {
      downloadTask: this.downloadTask.bind(this),
      statTask: this.statTask.bind(this),
      statLocalTask: this.statLocalTask.bind(this),
      listLocalTasks: this.listLocalTasks.bind(this),
      // The entries below a directory URL (dfget --recursive): list-entries.ts.
      listTaskEntries: listTaskEntriesHandler(this.deps.backends, this.deps.log, (e) => this.fail(e)),
      deleteTask: this.deleteTask.bind(this),
      deleteLocalTask: this.deleteLocalTask.bind(this),
    };
  }
}
