// A task is one piece of content (one task id). It owns the DAG of its peers and the
// state machine Dragonfly exposes as Task.state.
import { SizeScope, TaskType } from "../../gen/common/v2/common.js";
import { Dag } from "./dag.js";
import { Fsm } from "./fsm.js";
import type { Peer } from "./peer.js";
import { PieceDigests } from "./piece-digests.js";

export const TaskState = { Pending: "Pending", Running: "Running", Succeeded: "Succeeded", Failed: "Failed", Leave: "Leave" } as const;
export type TaskState = (typeof TaskState)[keyof typeof TaskState];
export const TaskEvent = { Download: "Download", DownloadSucceeded: "DownloadSucceeded", DownloadFailed: "DownloadFailed", Leave: "Leave" } as const;
export type TaskEvent = (typeof TaskEvent)[keyof typeof TaskEvent];

const S = TaskState;
export const TASK_TRANSITIONS = {
  [TaskEvent.Download]: { from: [S.Pending, S.Succeeded, S.Failed, S.Leave], to: S.Running },
  [TaskEvent.DownloadSucceeded]: { from: [S.Leave, S.Running, S.Failed], to: S.Succeeded },
  [TaskEvent.DownloadFailed]: { from: [S.Running], to: S.Failed },
  [TaskEvent.Leave]: { from: [S.Pending, S.Running, S.Succeeded, S.Failed], to: S.Leave },
} as const;

/** Content of at most this many bytes is "tiny" (Dragonfly's TinyFileSize). */
export const TINY_FILE_SIZE = 128;

export interface TaskInit {
  id: string;
  type: TaskType;
  url: string;
  digest?: string | undefined;
  tag?: string | undefined;
  application?: string | undefined;
  filteredQueryParams: string[];
  requestHeader: Record<string, string>;
  /** -1 when unknown. */
  contentLength: number;
  pieceLength: number;
  /** -1 when unknown. */
  totalPieceCount: number;
  backToSourceLimit: number;
}

export class Task {
  readonly id: string;
  readonly type: TaskType;
  url: string;
  digest: string | undefined;
  tag: string | undefined;
  application: string | undefined;
  filteredQueryParams: string[];
  requestHeader: Record<string, string>;
  contentLength: number;
  pieceLength: number;
  totalPieceCount: number;
  readonly backToSourceLimit: number;
  /** Peers that were sent to the origin for this task. */
  readonly backToSourcePeers = new Set<string>();
  /** Pieces fetched from the origin, as reported by back-to-source peers: the digests receivers verify against. */
  readonly pieces = new PieceDigests();
  readonly dag = new Dag<Peer>();
  readonly fsm: Fsm<TaskState, TaskEvent>;
  readonly createdAt: number;
  updatedAt: number;
  /** Set when a seed-peer trigger for this task failed, so the next peer goes elsewhere. */
  seedPeerFailed = false;
  /** Resolved at the next peersChanged(): what a peer waiting for parents waits on. */
  private change: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(init: TaskInit, now: number) {
    this.id = init.id;
    this.type = init.type;
    this.url = init.url;
    this.digest = init.digest;
    this.tag = init.tag;
    this.application = init.application;
    this.filteredQueryParams = init.filteredQueryParams;
    this.requestHeader = init.requestHeader;
    this.contentLength = init.contentLength;
    this.pieceLength = init.pieceLength;
    this.totalPieceCount = init.totalPieceCount;
    this.backToSourceLimit = init.backToSourceLimit;
    this.createdAt = now;
    this.updatedAt = now;
    this.fsm = new Fsm<TaskState, TaskEvent>(TaskState.Pending, TASK_TRANSITIONS);
  }

  get peerCount(): number {
    return this.dag.size;
  }

  sizeScope(): SizeScope {
    if (this.contentLength < 0 || this.totalPieceCount < 0) return SizeScope.UNKNOW;
    if (this.contentLength === 0) return SizeScope.EMPTY;
    if (this.contentLength <= TINY_FILE_SIZE) return SizeScope.TINY;
    if (this.totalPieceCount === 1) return SizeScope.SMALL;
    return SizeScope.NORMAL;
  }

  /** Resolves at the next peersChanged(). */
  nextChange(): Promise<void> {
    if (!this.change) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.change = { promise, resolve };
    }
    return this.change.promise;
  }

  /**
   * A peer may have become a parent for others: it entered Running, BackToSource or Succeeded
   * (Peer's state machine calls this) or gained parents (Resource.addParents). Not on
   * registration alone: a peer that just registered serves nobody yet, and a flash crowd
   * registering would wake every waiting peer once per newcomer.
   */
  peersChanged(): void {
    const c = this.change;
    this.change = undefined;
    c?.resolve();
  }

  canBackToSource(): boolean {
    return this.backToSourcePeers.size <= this.backToSourceLimit && this.type !== TaskType.PERSISTENT_CACHE;
  }

  /** Some peer on another host, not blocked, is downloading or holds the content. */
  hasAvailablePeer(hostId: string, blocklist: ReadonlySet<string>): boolean {
    for (const peer of this.dag.values()) {
      if (peer.host.id === hostId || blocklist.has(peer.id)) continue;
      if (peer.fsm.is("Running", "Succeeded", "BackToSource")) return true;
    }
    return false;
  }
}
