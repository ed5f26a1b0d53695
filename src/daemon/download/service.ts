// dfdaemon.v2.DfdaemonDownload on the local unix socket: what dfget, dfcache and dfctl ask.
// Only this service may choose an output path, because only local users reach the socket.
import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { isTaskId } from "../../common/ids.js";
import type { Logger } from "../../common/logger.js";
import type { Task } from "../../gen/common/v2/common.js";
import type { DeleteLocalTaskRequest, DeleteTaskRequest, DownloadTaskRequest, DownloadTaskResponse, ListLocalTasksRequest, ListLocalTasksResponse, StatLocalTaskRequest, StatLocalTaskResponse, StatTaskRequest } from "../../gen/dfdaemon/v2/dfdaemon.js";
import type { Empty } from "../../gen/google/protobuf/empty.js";
import { failStream, grpcError, toGrpcError } from "../grpc/errors.js";
import { streamDownload } from "../grpc/download-stream.js";
import type { Storage } from "../storage/storage.js";
import type { TaskStore } from "../storage/types.js";
import type { TaskManager } from "../task/manager.js";
import { localTaskStat, localTaskToProto } from "../upload/service.js";
import { checkOutputPath, OutputError, writeOutput } from "./output.js";
import { errorMessage } from "../../common/errors.js";

export interface DownloadServiceDeps {
  storage: Storage;
  tasks: TaskManager;
  log: Logger;
  hostId: string;
  newPeerId: () => string;
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
    if (e instanceof OutputError) return grpcError(status.INVALID_ARGUMENT, e.message);
    return toGrpcError(e);
  }

  downloadTask(call: ServerWritableStream<DownloadTaskRequest, DownloadTaskResponse>): void {
    const d = call.request.download;
    const run = async () => {
      if (!d) throw new OutputError("download is required");
      if (d.outputPath) await checkOutputPath(d.outputPath, d.overwrite);
      const task = await streamDownload(call, this.deps.tasks, { hostId: this.deps.hostId, peerId: this.deps.newPeerId() }, false);
      if (d.outputPath) await writeOutput(task.contentPath, d.outputPath, { overwrite: d.overwrite, forceHardLink: d.forceHardLink });
    };
    run().then(
      () => call.end(),
      (e: unknown) => {
        this.deps.log.info({ url: d?.url, err: errorMessage(e) }, "download failed");
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
      deleteTask: this.deleteTask.bind(this),
      deleteLocalTask: this.deleteLocalTask.bind(this),
    };
  }
}
