// Candidate filter: a random sample of the task's peers, minus every peer that cannot or should
// not serve this child. Each rejection carries its reason, for logs and tests.
import { HOST_TYPE_NORMAL } from "../resource/host.js";
import { PeerState, type Peer } from "../resource/peer.js";
import type { Evaluator } from "./evaluator/evaluator.js";

export type RejectReason = "blocked" | "disable-shared" | "same-host" | "upload-limit" | "not-serving" | "bad-parent" | "cycle";

export interface FilterResult {
  candidates: Peer[];
  rejected: Map<string, RejectReason>;
}

export interface FilterOptions {
  filterParentLimit: number;
  evaluator: Evaluator;
  rng?: () => number;
  /** Keep parents that would close a cycle in the DAG (offered outside it, see Peer.meshParents). */
  allowCycles?: boolean;
}

export function filterCandidateParents(child: Peer, blocklist: ReadonlySet<string>, opts: FilterOptions): FilterResult {
  const dag = child.task.dag;
  const sample = dag.randomValues(opts.filterParentLimit, opts.rng);
  const candidates: Peer[] = [];
  const rejected = new Map<string, RejectReason>();
  for (const parent of sample) {
    let reason: RejectReason | undefined;
    if (parent === child || blocklist.has(parent.id)) reason = "blocked";
    else if (parent.host.disableShared) reason = "disable-shared";
    else if (parent.host.id === child.host.id) reason = "same-host";
    else if (parent.host.freeUploadCount <= 0) reason = "upload-limit";
    // A normal peer can serve only once it receives pieces: from parents, the origin, or done.
    else if (parent.host.type === HOST_TYPE_NORMAL && dag.inDegree(parent.id) === 0 && !parent.fsm.is(PeerState.BackToSource, PeerState.Succeeded)) reason = "not-serving";
    else if (opts.evaluator.isBadParent(parent)) reason = "bad-parent";
    else if (!opts.allowCycles && !dag.canAddEdge(parent.id, child.id)) reason = "cycle";
    if (reason) rejected.set(parent.id, reason);
    else candidates.push(parent);
  }
  return { candidates, rejected };
}
