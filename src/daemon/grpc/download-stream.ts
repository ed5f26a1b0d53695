// DownloadTask as both services stream it: a Started message with what is already present,
// then one PieceFinished per piece as it lands (with the bytes when the caller asked for them).
import type { ServerWritableStream } from "@grpc/grpc-js";
import { TrafficType } from "../../gen/common/v2/common.js";
import type { DownloadTaskRequest, DownloadTaskResponse } from "../../gen/dfdaemon/v2/dfdaemon.js";
import type { PieceInfo, TaskStore } from "../storage/types.js";
import { toProtoPiece, type TaskManager } from "../task/manager.js";

export interface StreamedDownload {
  task: TaskStore;
}

export async function streamDownload(
  call: ServerWritableStream<DownloadTaskRequest, DownloadTaskResponse>,
  tasks: TaskManager,
  ids: { hostId: string; peerId: string },
  remote: boolean,
  /** Called as the task starts, before its first piece is asked for (again if it restarts). */
  onStarted?: (task: TaskStore) => void,
): Promise<TaskStore> {
  const download = call.request.download;
  if (!download) throw new TypeError("download is required");
  const abort = new AbortController();
  // A scheduler's trigger (remote) is not given up with its stream: a scheduler that goes away
  // mid-trigger (killed, restarted) leaves its tasks to the next scheduler, whose swarm needs
  // this download still (issue 26); the seed peer moves its own conversation there.
  if (!remote) call.on("cancelled", () => abort.abort(new Error("client cancelled the download")));
  const needContent = download.needPieceContent;
  // Pieces are written to the stream in arrival order; the byte reads for needPieceContent
  // are serialised so that messages never overtake each other.
  let chain: Promise<void> = Promise.resolve();
  const sent = new Set<number>();
  const sendPiece = (task: TaskStore, p: PieceInfo) => {
    if (sent.has(p.number)) return;
    sent.add(p.number);
    chain = chain.then(async () => {
      const piece = toProtoPiece(p, p.parentId ? TrafficType.REMOTE_PEER : TrafficType.BACK_TO_SOURCE);
      if (needContent) piece.content = await task.readPiece(p.number);
      call.write({ ...ids, taskId: task.id, response: { $case: "downloadPieceFinishedResponse", downloadPieceFinishedResponse: { piece } } });
    });
  };
  let current: TaskStore | undefined;
  const task = await tasks.download({
    download,
    remote,
    signal: abort.signal,
    // Bytes written to the stream cannot be taken back: such a task is never restarted.
    liveBytes: needContent,
    onStarted: (t, present) => {
      // Again when the task restarted from scratch (the origin changed): a fresh account.
      if (current !== undefined && current !== t) sent.clear();
      current = t;
      call.write({
        ...ids,
        taskId: t.id,
        response: {
          $case: "downloadTaskStartedResponse",
          downloadTaskStartedResponse: { contentLength: t.meta.contentLength, responseHeader: t.meta.responseHeader, pieces: [], isFinished: t.meta.state === "succeeded" },
        },
      });
      for (const p of present) sendPiece(t, p);
      onStarted?.(t);
    },
    onPiece: sendPiece,
  });
  // Pieces that landed between Started and our subscription are sent now.
  for (const p of task.finished()) sendPiece(task, p);
  await chain;
  return task;
}
