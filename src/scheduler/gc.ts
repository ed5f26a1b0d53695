// Garbage collection of the in-memory state, on Dragonfly's rules: peers that left, failed,
// stalled (no piece for pieceDownloadTimeout while downloading) or went quiet for peerTTL;
// tasks without peers; hosts that missed two announce intervals (hostTTL when they never told
// their interval). The clock is injected so tests can move time instead of sleeping.
import type { Logger } from "pino";
import { PeerState } from "./resource/peer.js";
import type { Resource } from "./resource/resource.js";

export interface GcConfig {
  pieceDownloadTimeout: number;
  peerGCInterval: number;
  peerTTL: number;
  taskGCInterval: number;
  hostGCInterval: number;
  hostTTL: number;
}

/** Tasks with more peers than this drop finished peers that serve nobody (Dragonfly's rule). */
export const PEER_COUNT_LIMIT_FOR_TASK = 300;

export class ResourceGc {
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly resource: Resource,
    private readonly config: GcConfig,
    private readonly log: Logger,
    private readonly onHostRemoved: () => void = () => undefined,
  ) {}

  start(): void {
    const every = (ms: number, fn: () => void) => {
      if (ms <= 0) return;
      const t = setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.config.peerGCInterval, () => this.runPeerGc());
    every(this.config.taskGCInterval, () => this.runTaskGc());
    every(this.config.hostGCInterval, () => this.runHostGc());
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** Returns the ids of the peers removed. */
  runPeerGc(): string[] {
    const now = this.resource.now();
    const removed: string[] = [];
    for (const peer of [...this.resource.peers.values()]) {
      let reason: string | undefined;
      if (peer.fsm.is(PeerState.Leave)) reason = "left";
      else if (peer.fsm.is(PeerState.Failed)) reason = "failed";
      else if (peer.host.disableShared && peer.fsm.is(PeerState.Succeeded)) reason = "finished on a host that shares nothing";
      else if (peer.fsm.is(PeerState.Running, PeerState.BackToSource) && now - peer.pieceUpdatedAt > this.config.pieceDownloadTimeout) reason = "no piece progress";
      else if (now - peer.updatedAt > this.config.peerTTL) reason = "ttl expired";
      else if (peer.task.peerCount > PEER_COUNT_LIMIT_FOR_TASK && peer.fsm.is(PeerState.Succeeded) && peer.task.dag.outDegree(peer.id) === 0) reason = "crowded task";
      if (reason) {
        this.resource.deletePeer(peer);
        removed.push(peer.id);
        this.log.debug({ peerId: peer.id, reason }, "peer reclaimed");
      }
    }
    return removed;
  }

  runTaskGc(): string[] {
    const removed: string[] = [];
    for (const task of [...this.resource.tasks.values()]) {
      if (task.peerCount === 0) {
        this.resource.deleteTask(task);
        removed.push(task.id);
      }
    }
    return removed;
  }

  runHostGc(): string[] {
    const now = this.resource.now();
    const removed: string[] = [];
    for (const host of [...this.resource.hosts.values()]) {
      const limit = host.announceInterval !== undefined && host.announceInterval > 0 ? 2 * host.announceInterval : this.config.hostTTL;
      if (now - host.updatedAt > limit) {
        this.resource.deleteHost(host);
        removed.push(host.id);
        this.log.info({ hostId: host.id }, "host stopped announcing; reclaimed with its peers");
      }
    }
    if (removed.length > 0) this.onHostRemoved();
    return removed;
  }
}
