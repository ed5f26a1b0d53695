// The scheduling loop of one peer (Dragonfly's ScheduleCandidateParents): try to find parents,
// retrying with a jittered interval; send the peer to the origin when it asked for it or after
// retryBackToSourceLimit failed rounds (if the task's back-to-source quota allows); give up with
// FAILED_PRECONDITION after retryLimit rounds.
import { status } from "@grpc/grpc-js";
import type { Peer } from "../resource/peer.js";
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
  sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class Scheduling {
  private readonly rng: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly resource: Resource,
    readonly config: SchedulingConfig,
    readonly evaluator: Evaluator,
    deps: SchedulingDeps = {},
  ) {
    this.rng = deps.rng ?? Math.random;
    this.sleep = deps.sleep ?? realSleep;
  }

  /** Filtered, ranked, best `candidateParentLimit` parents (no DAG change). */
  findCandidateParents(peer: Peer, blocklist: ReadonlySet<string>): Peer[] {
    const { candidates } = filterCandidateParents(peer, blocklist, { filterParentLimit: this.config.filterParentLimit, evaluator: this.evaluator, rng: this.rng });
    if (candidates.length === 0) return [];
    return this.evaluator.evaluateParents(candidates, peer, this.resource.now()).slice(0, this.config.candidateParentLimit);
  }

  /**
   * Runs the loop until parents are assigned in the DAG, the peer must go to the origin, or
   * the limits are exhausted (throws SchedulingError). `alive` is polled between rounds so a
   * peer whose stream closed stops being scheduled.
   */
  /**
   * Mid-download top-up: a running peer with fewer than candidateParentLimit parents gets the
   * qualifying peers it does not have yet as extra parents (DAG edges added; the DAG refuses
   * cycles). Returns the full parent list (existing parents first) when any was added,
   * otherwise undefined. Costs one filter pass (filterParentLimit samples).
   */
  refreshCandidateParents(peer: Peer): Peer[] | undefined {
    const current = peer.parents();
    const room = this.config.candidateParentLimit - current.length;
    if (room <= 0) return undefined;
    const blocklist = new Set(peer.blockParents);
    blocklist.add(peer.id);
    for (const p of current) blocklist.add(p.id);
    const candidates = this.findCandidateParents(peer, blocklist).slice(0, room);
    const added = candidates.length > 0 ? this.resource.addParents(peer, candidates) : [];
    return added.length > 0 ? [...current, ...added] : undefined;
  }

  async scheduleCandidateParents(peer: Peer, blocklist: ReadonlySet<string>, alive: () => boolean = () => true): Promise<ScheduleOutcome> {
    for (let n = 0; ; ) {
      if (!alive()) throw new SchedulingError(status.CANCELLED, `peer ${peer.id} left while being scheduled`);
      if (peer.task.canBackToSource()) {
        if (peer.needBackToSource) return { kind: "back-to-source", description: "peer's NeedBackToSource is true" };
        if (n >= this.config.retryBackToSourceLimit) return { kind: "back-to-source", description: "scheduling exceeded RetryBackToSourceLimit" };
      }
      if (n >= this.config.retryLimit) throw new SchedulingError(status.FAILED_PRECONDITION, "scheduling exceeded RetryLimit");

      this.resource.deleteParents(peer);
      const candidates = this.findCandidateParents(peer, blocklist);
      const added = candidates.length > 0 ? this.resource.addParents(peer, candidates) : [];
      if (added.length > 0) return { kind: "normal", parents: added };
      n++;
      // Jittered wait in [0.5, 1.5) × interval so that peers retrying together spread out.
      await this.sleep(this.config.retryInterval * (0.5 + this.rng()));
    }
  }
}
