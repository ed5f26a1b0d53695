// The scheduling loop of one peer (Dragonfly's ScheduleCandidateParents): try to find parents,
// retrying with a jittered interval (and in between whenever a peer of the task may have become
// a parent, see waitForParents); send the peer to the origin when it asked for it or after
// retryBackToSourceLimit failed rounds (if the task's back-to-source quota allows); give up with
// FAILED_PRECONDITION after retryLimit rounds.
import { status } from "@grpc/grpc-js";
import { PeerState, type Peer } from "../resource/peer.js";
import type { Resource } from "../resource/resource.js";
import type { Evaluator } from "./evaluator/evaluator.js";
import { filterCandidateParents } from "./filter.js";

export interface SchedulingConfig {
  retryLimit: number;
  retryBackToSourceLimit: number;
  /** ms */
  retryInterval: number;
  filterParentLimit: number;
  candidateParentLimit: number;
  /** Top-up parents allowed outside the DAG (see Peer.meshParents); 0 = none. */
  meshParentLimit?: number;
}

/** The limits a cluster's config may change at run time (dynconfig.ts). */
export interface ParentLimits {
  candidateParentLimit: number;
  filterParentLimit: number;
}

export type ScheduleOutcome = { kind: "normal"; parents: Peer[] } | { kind: "back-to-source"; description: string };

export class SchedulingError extends Error {
  override name = "SchedulingError";
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

export interface SchedulingDeps {
  rng?: () => number;
  /** Resolves after `ms`, or early (without error) once `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Clock for the retry interval (ms); performance.now by default. */
  now?: () => number;
}

/** Least time between two tries of one waiting peer prompted by task changes (ms). */
const RECHECK_MS = 20;

const realSleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    const stop = () => {
      clearTimeout(t);
      resolve();
    };
    signal?.addEventListener("abort", stop, { once: true });
  });

export class Scheduling {
  private readonly rng: () => number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly now: () => number;
  /** In force now: the local config's, until the manager's cluster config overrides them. */
  private limits: ParentLimits;

  constructor(
    private readonly resource: Resource,
    readonly config: SchedulingConfig,
    readonly evaluator: Evaluator,
    deps: SchedulingDeps = {},
  ) {
    this.rng = deps.rng ?? Math.random;
    this.sleep = deps.sleep ?? realSleep;
    this.now = deps.now ?? (() => performance.now());
    this.limits = { candidateParentLimit: config.candidateParentLimit, filterParentLimit: config.filterParentLimit };
  }

  get parentLimits(): Readonly<ParentLimits> {
    return this.limits;
  }

  /** Applies from the next search for parents on, also within rounds already retrying. */
  setParentLimits(limits: ParentLimits): void {
    this.limits = { ...limits };
  }

  /** Filtered, ranked, best `candidateParentLimit` parents (no DAG change). */
  findCandidateParents(peer: Peer, blocklist: ReadonlySet<string>, allowCycles = false, limit = this.limits.candidateParentLimit): Peer[] {
    const { candidates } = filterCandidateParents(peer, blocklist, { filterParentLimit: this.limits.filterParentLimit, evaluator: this.evaluator, rng: this.rng, allowCycles });
    if (candidates.length === 0) return [];
    return this.evaluator.evaluateParents(candidates, peer, this.resource.now()).slice(0, limit);
  }

  /**
   * Mid-download top-up: a running peer gets qualifying peers it does not have yet, up to
   * candidateParentLimit DAG parents (edges added) plus meshParentLimit mesh parents: the
   * qualifying peers left over once the DAG is full, including peers downstream of it, which
   * the DAG cannot make its parents (Peer.meshParents). Returns the full parent list (DAG
   * parents, then mesh parents) when any was added, otherwise undefined.
   * Costs one filter pass (filterParentLimit samples).
   */
  refreshCandidateParents(peer: Peer): Peer[] | undefined {
    const current = peer.parents();
    for (const [id, p] of peer.meshParents) if (p.fsm.is(PeerState.Leave, PeerState.Failed)) peer.meshParents.delete(id);
    let dagRoom = this.limits.candidateParentLimit - current.length;
    let meshRoom = (this.config.meshParentLimit ?? 0) - peer.meshParents.size;
    if (dagRoom <= 0 && meshRoom <= 0) return undefined;
    const blocklist = new Set(peer.blockParents);
    blocklist.add(peer.id);
    for (const p of current) blocklist.add(p.id);
    for (const id of peer.meshParents.keys()) blocklist.add(id);
    const dag = peer.task.dag;
    const ranked = this.findCandidateParents(peer, blocklist, meshRoom > 0, Infinity);
    // Split before adding edges: an edge into this peer never changes whether another parent
    // would close a cycle (that needs a path out of this peer).
    const acyclic = ranked.filter((c) => dag.canAddEdge(c.id, peer.id));
    // Mesh candidates: the peers downstream, and those the full DAG has no room for.
    const extra = ranked.filter((c) => !acyclic.includes(c));
    let added = 0;
    for (const c of acyclic) {
      if (dagRoom > 0 && this.resource.addParents(peer, [c]).length > 0) {
        dagRoom--;
        added++;
      } else extra.push(c);
    }
    // Mesh parents at random, not by rank: every child ranks the same few peers best, and
    // giving them all the same mesh parents makes hubs whose upload is split many ways.
    while (meshRoom > 0 && extra.length > 0) {
      const [c] = extra.splice(Math.floor(this.rng() * extra.length), 1);
      if (!c) break;
      peer.meshParents.set(c.id, c);
      meshRoom--;
      added++;
    }
    return added > 0 ? [...peer.parents(), ...peer.meshParents.values()] : undefined;
  }

  /**
   * Runs the loop until parents are assigned in the DAG, the peer must go to the origin, or
   * the limits are exhausted (throws SchedulingError). `alive` is polled between rounds so a
   * peer whose stream closed stops being scheduled.
   */
  async scheduleCandidateParents(peer: Peer, blocklist: ReadonlySet<string>, alive: () => boolean = () => true): Promise<ScheduleOutcome> {
    for (let n = 0; ; ) {
      if (!alive()) throw new SchedulingError(status.CANCELLED, `peer ${peer.id} left while being scheduled`);
      if (peer.task.canBackToSource()) {
        if (peer.needBackToSource) return { kind: "back-to-source", description: "peer's NeedBackToSource is true" };
        if (n >= this.config.retryBackToSourceLimit) return { kind: "back-to-source", description: "scheduling exceeded RetryBackToSourceLimit" };
      }
      if (n >= this.config.retryLimit) throw new SchedulingError(status.FAILED_PRECONDITION, "scheduling exceeded RetryLimit");

      const added = this.tryParents(peer, blocklist);
      if (added.length > 0) return { kind: "normal", parents: added };
      n++;
      // Jittered wait in [0.5, 1.5) × interval so that peers retrying together spread out.
      const later = await this.waitForParents(peer, blocklist, alive, this.config.retryInterval * (0.5 + this.rng()));
      if (later.length > 0) return { kind: "normal", parents: later };
    }
  }

  private tryParents(peer: Peer, blocklist: ReadonlySet<string>): Peer[] {
    this.resource.deleteParents(peer);
    peer.meshParents.clear();
    const candidates = this.findCandidateParents(peer, blocklist);
    return candidates.length > 0 ? this.resource.addParents(peer, candidates) : [];
  }

  /**
   * Waits out one retry interval, trying again whenever a peer of the task may have become a
   * parent (Task.peersChanged) rather than only when the interval ends. The first peer of a
   * new task registers before the seed peer its registration triggered starts, and would
   * otherwise wait a whole jittered interval (up to 1.5 × retryInterval) for a parent that
   * was there milliseconds later. The interval still bounds the round, so the retry limits
   * keep their meaning, and tries are at least RECHECK_MS apart, so a busy task does not
   * re-run the filter for every waiting peer on every change. Returns the parents added, or
   * none once the interval is over.
   */
  private async waitForParents(peer: Peer, blocklist: ReadonlySet<string>, alive: () => boolean, ms: number): Promise<Peer[]> {
    const until = this.now() + ms;
    let changed = peer.task.nextChange();
    for (let wait = ms; wait > 0; wait = until - this.now()) {
      // The interval's timer is dropped when a change comes first.
      const timer = new AbortController();
      const woke = await Promise.race([this.sleep(wait, timer.signal).then(() => false), changed.then(() => true)]);
      timer.abort();
      if (!woke) return [];
      if (!alive()) return [];
      // Listening again before trying: a change during the try or the pause below counts.
      changed = peer.task.nextChange();
      const added = this.tryParents(peer, blocklist);
      if (added.length > 0) return added;
      const left = until - this.now();
      if (left > 0) await this.sleep(Math.min(RECHECK_MS, left));
    }
    return [];
  }
}
