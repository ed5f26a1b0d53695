// A peer is one download of one task on one host. Its state machine is Dragonfly's, and it
// keeps what scheduling needs: finished pieces, a window of piece costs (for the bad-parent
// test), parents it must not be offered again, and the open AnnouncePeer stream if any.
import type { AnnouncePeerResponse } from "../../gen/scheduler/v2/scheduler.js";
import type { Priority, Range } from "../../gen/common/v2/common.js";
import { Fsm } from "./fsm.js";
import type { Host } from "./host.js";
import { RollingWindow } from "./stats.js";
import type { Task } from "./task.js";

export const PeerState = {
  Pending: "Pending",
  ReceivedEmpty: "ReceivedEmpty",
  ReceivedTiny: "ReceivedTiny",
  ReceivedSmall: "ReceivedSmall",
  ReceivedNormal: "ReceivedNormal",
  Running: "Running",
  BackToSource: "BackToSource",
  Succeeded: "Succeeded",
  Failed: "Failed",
  Leave: "Leave",
} as const;
export type PeerState = (typeof PeerState)[keyof typeof PeerState];

export const PeerEvent = {
  RegisterEmpty: "RegisterEmpty",
  RegisterTiny: "RegisterTiny",
  RegisterSmall: "RegisterSmall",
  RegisterNormal: "RegisterNormal",
  Download: "Download",
  DownloadBackToSource: "DownloadBackToSource",
  DownloadSucceeded: "DownloadSucceeded",
  DownloadFailed: "DownloadFailed",
  Leave: "Leave",
} as const;
export type PeerEvent = (typeof PeerEvent)[keyof typeof PeerEvent];

const S = PeerState;
const RECEIVED = [S.ReceivedEmpty, S.ReceivedTiny, S.ReceivedSmall, S.ReceivedNormal] as const;
export const PEER_TRANSITIONS = {
  [PeerEvent.RegisterEmpty]: { from: [S.Pending], to: S.ReceivedEmpty },
  [PeerEvent.RegisterTiny]: { from: [S.Pending], to: S.ReceivedTiny },
  [PeerEvent.RegisterSmall]: { from: [S.Pending], to: S.ReceivedSmall },
  [PeerEvent.RegisterNormal]: { from: [S.Pending], to: S.ReceivedNormal },
  [PeerEvent.Download]: { from: [...RECEIVED], to: S.Running },
  [PeerEvent.DownloadBackToSource]: { from: [...RECEIVED, S.Running], to: S.BackToSource },
  [PeerEvent.DownloadSucceeded]: { from: [...RECEIVED, S.Running, S.BackToSource], to: S.Succeeded },
  [PeerEvent.DownloadFailed]: { from: [S.Pending, ...RECEIVED, S.Running, S.BackToSource, S.Succeeded], to: S.Failed },
  [PeerEvent.Leave]: { from: [S.Pending, ...RECEIVED, S.Running, S.BackToSource, S.Failed, S.Succeeded], to: S.Leave },
} as const;

/** Dragonfly keeps the last 2000 piece costs per peer. */
export const PIECE_COSTS_WINDOW = 2000;

/** Where responses for a peer go: the open AnnouncePeer stream. */
export interface AnnounceStream {
  send(response: AnnouncePeerResponse): void;
}

export interface PeerInit {
  id: string;
  priority: Priority;
  range?: Range | undefined;
  concurrentPieceCount?: number | undefined;
}

export class Peer {
  readonly id: string;
  readonly task: Task;
  readonly host: Host;
  readonly priority: Priority;
  readonly range: Range | undefined;
  readonly concurrentPieceCount: number;
  readonly fsm: Fsm<PeerState, PeerEvent>;
  readonly finishedPieces = new Set<number>();
  readonly pieceCosts = new RollingWindow(PIECE_COSTS_WINDOW);
  /** Peers this peer must not be offered as parents (itself, failed and rescheduled parents). */
  readonly blockParents = new Set<string>();
  /**
   * Parents offered on top of the DAG by a parent refresh once the DAG's candidateParentLimit
   * is reached: any qualifying peer, also one downstream of this one, which the DAG cannot make
   * its parent without a cycle. Exchange both ways is what lets the top of the DAG fetch from
   * anyone but the seed peer, and more parents let a child find one with upload to spare. It
   * cannot deadlock: a child only ever asks a parent for pieces the parent reported as finished.
   */
  readonly meshParents = new Map<string, Peer>();
  needBackToSource = false;
  /** Download time in ms, set when the peer finishes. */
  cost = 0;
  readonly createdAt: number;
  updatedAt: number;
  pieceUpdatedAt: number;
  stream: AnnounceStream | undefined;

  constructor(init: PeerInit, task: Task, host: Host, now: number) {
    this.id = init.id;
    this.task = task;
    this.host = host;
    this.priority = init.priority;
    this.range = init.range;
    this.concurrentPieceCount = init.concurrentPieceCount ?? 0;
    this.createdAt = now;
    this.updatedAt = now;
    this.pieceUpdatedAt = now;
    // Downloading, going to the origin or done: now a parent for peers still waiting for one
    // (a seed peer that just started, most often).
    this.fsm = new Fsm<PeerState, PeerEvent>(PeerState.Pending, PEER_TRANSITIONS, (to) => {
      if (to === PeerState.Running || to === PeerState.BackToSource || to === PeerState.Succeeded) task.peersChanged();
    });
  }

  get state(): PeerState {
    return this.fsm.current;
  }

  /** Parents currently assigned in the task's DAG. */
  parents(): Peer[] {
    return this.task.dag.parents(this.id);
  }

  children(): Peer[] {
    return this.task.dag.children(this.id);
  }
}
