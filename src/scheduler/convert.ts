// Resource objects → wire messages (common.v2 Peer, Task, Host), shaped as Dragonfly's
// scheduler fills them, so clients that echo Peers back in ReschedulePeerRequest get every
// field their validators require (id, state, cost, task, host, timestamps).
import type { Host as HostMessage, Peer as PeerMessage, Task as TaskMessage } from "../gen/common/v2/common.js";
import { msToDuration } from "../common/grpc/duration.js";
import type { Peer } from "./resource/peer.js";
import type { Task } from "./resource/task.js";

export function taskMessage(task: Task, withPieces = true): TaskMessage {
  return {
    id: task.id,
    type: task.type,
    url: task.url,
    digest: task.digest,
    tag: task.tag,
    application: task.application,
    filteredQueryParams: task.filteredQueryParams,
    requestHeader: task.requestHeader,
    contentLength: Math.max(0, task.contentLength),
    pieceCount: Math.max(0, task.totalPieceCount),
    sizeScope: task.sizeScope(),
    pieces: withPieces ? task.pieces.list() : [],
    state: task.fsm.current,
    peerCount: task.peerCount,
    hasAvailablePeer: task.dag.values().some((p) => p.fsm.is("Running", "Succeeded", "BackToSource")),
    createdAt: new Date(task.createdAt),
    updatedAt: new Date(task.updatedAt),
  };
}

export function hostMessage(host: Peer["host"]): HostMessage {
  return host.message;
}

export function peerMessage(peer: Peer, now: number): PeerMessage {
  return {
    id: peer.id,
    range: peer.range,
    priority: peer.priority,
    pieces: [],
    cost: msToDuration(peer.cost > 0 ? peer.cost : now - peer.createdAt),
    state: peer.fsm.current,
    task: taskMessage(peer.task, false),
    host: hostMessage(peer.host),
    needBackToSource: peer.needBackToSource,
    createdAt: new Date(peer.createdAt),
    updatedAt: new Date(peer.updatedAt),
    concurrentPieceCount: peer.concurrentPieceCount,
  };
}
