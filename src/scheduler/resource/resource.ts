// The scheduler's whole in-memory state: hosts, tasks and peers, and the operations that must
// keep them consistent with each other (DAG edges ⇔ parent hosts' upload counts, peers ⇔ their
// host's and task's indexes). Everything that mutates more than one object goes through here.
import { Host, type HostLimits } from "./host.js";
import { Peer, PeerEvent, type PeerInit } from "./peer.js";
import { Task, type TaskInit } from "./task.js";

export type Clock = () => number;

export class Resource {
  readonly hosts = new Map<string, Host>();
  readonly tasks = new Map<string, Task>();
  readonly peers = new Map<string, Peer>();

  constructor(
    readonly limits: HostLimits,
    readonly now: Clock = Date.now,
  ) {}

  /** Creates or refreshes a host from its announcement. */
  announceHost(message: ConstructorParameters<typeof Host>[0], announceInterval?: number): Host {
    const existing = this.hosts.get(message.id);
    if (existing) {
      existing.update(message, this.now(), this.limits, announceInterval);
      return existing;
    }
    const host = new Host(message, this.now(), this.limits, announceInterval);
    this.hosts.set(host.id, host);
    return host;
  }

  loadOrCreateTask(init: TaskInit): { task: Task; created: boolean } {
    const existing = this.tasks.get(init.id);
    if (existing) return { task: existing, created: false };
    const task = new Task(init, this.now());
    this.tasks.set(task.id, task);
    return { task, created: true };
  }

  /** Creates a peer in its task's DAG and its host's index; returns the existing one if known. */
  loadOrCreatePeer(init: PeerInit, task: Task, host: Host): { peer: Peer; created: boolean } {
    const existing = this.peers.get(init.id);
    if (existing) return { peer: existing, created: false };
    const peer = new Peer(init, task, host, this.now());
    task.dag.addVertex(peer.id, peer);
    host.peers.set(peer.id, peer);
    this.peers.set(peer.id, peer);
    return { peer, created: true };
  }

  /**
   * Adds parent → child edges where the DAG allows; returns the parents actually added.
   * Each edge counts as one concurrent upload on the parent's host.
   */
  addParents(child: Peer, parents: readonly Peer[]): Peer[] {
    const added: Peer[] = [];
    for (const parent of parents) {
      if (!child.task.dag.canAddEdge(parent.id, child.id)) continue;
      child.task.dag.addEdge(parent.id, child.id);
      parent.host.concurrentUploadCount++;
      parent.host.uploadCount++;
      added.push(parent);
    }
    if (added.length > 0) child.task.peersChanged();
    return added;
  }

  /** Removes every parent of `child`, releasing the parents' upload slots. */
  deleteParents(child: Peer): void {
    for (const parentId of child.task.dag.deleteInEdges(child.id)) {
      const parent = this.peers.get(parentId);
      if (parent) parent.host.concurrentUploadCount = Math.max(0, parent.host.concurrentUploadCount - 1);
    }
  }

  /** Removes every child edge of `parent`, releasing its host's upload slots. */
  private deleteChildren(parent: Peer): void {
    const n = parent.task.dag.deleteOutEdges(parent.id).length;
    parent.host.concurrentUploadCount = Math.max(0, parent.host.concurrentUploadCount - n);
  }

  /** The peer leaves: state Leave, edges dropped, removed from every index. */
  deletePeer(peer: Peer): void {
    if (peer.fsm.can(PeerEvent.Leave)) peer.fsm.fire(PeerEvent.Leave);
    this.deleteParents(peer);
    this.deleteChildren(peer);
    peer.task.dag.deleteVertex(peer.id);
    peer.host.peers.delete(peer.id);
    if (this.peers.get(peer.id) === peer) this.peers.delete(peer.id);
    peer.stream = undefined;
  }

  /** The host leaves with all its peers. */
  deleteHost(host: Host): void {
    for (const peer of [...host.peers.values()]) this.deletePeer(peer);
    if (this.hosts.get(host.id) === host) this.hosts.delete(host.id);
  }

  /** The task is dropped with all its peers. */
  deleteTask(task: Task): void {
    for (const peer of task.dag.values()) this.deletePeer(peer);
    if (task.fsm.can("Leave")) task.fsm.fire("Leave");
    if (this.tasks.get(task.id) === task) this.tasks.delete(task.id);
  }
}
