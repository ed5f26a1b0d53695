// Evaluators rank candidate parents for a child. Every evaluator shares Dragonfly's bad-parent
// test (state, then piece-cost outliers); they differ in how they score the good ones.
import { PeerState, type Peer } from "../../resource/peer.js";

export interface Evaluator {
  readonly name: string;
  /** The parents sorted best first (a new array). */
  evaluateParents(parents: readonly Peer[], child: Peer, now: number): Peer[];
  isBadParent(peer: Peer): boolean;
}

export const MAX_SCORE = 1;
export const MIN_SCORE = 0;
/** Location paths compare at most this many "|"-separated elements. */
const MAX_ELEMENT_LEN = 5;
const MIN_AVAILABLE_COST_LEN = 2;

const BAD_STATES: readonly PeerState[] = [
  PeerState.Failed,
  PeerState.Leave,
  PeerState.Pending,
  PeerState.ReceivedTiny,
  PeerState.ReceivedSmall,
  PeerState.ReceivedNormal,
  PeerState.ReceivedEmpty,
];

/**
 * A parent is bad when it is not downloading or done, or when its newest piece cost is an
 * outlier: more than 20× the mean of the earlier ones while the window is filling, or beyond
 * mean + 3σ once the window is full (normal-distribution assumption, as Dragonfly).
 */
export function isBadParent(peer: Peer): boolean {
  if (BAD_STATES.includes(peer.state)) return true;
  const costs = peer.pieceCosts;
  if (costs.count < MIN_AVAILABLE_COST_LEN) return false;
  const mean = costs.meanExcludingLast();
  if (!costs.isFull) return costs.last > mean * 20;
  return costs.last > mean + 3 * costs.stdDevExcludingLast();
}

export function idcAffinityScore(dst: string, src: string): number {
  if (dst === "" || src === "") return MIN_SCORE;
  return dst.toLowerCase() === src.toLowerCase() ? MAX_SCORE : MIN_SCORE;
}

/** Shared prefix of "area|country|province|city|…" paths, in fifths. */
export function locationAffinityScore(dst: string, src: string): number {
  if (dst === "" || src === "") return MIN_SCORE;
  if (dst.toLowerCase() === src.toLowerCase()) return MAX_SCORE;
  const a = dst.split("|");
  const b = src.split("|");
  const n = Math.min(a.length, b.length, MAX_ELEMENT_LEN);
  let score = 0;
  for (let i = 0; i < n; i++) {
    if ((a[i] ?? "").toLowerCase() !== (b[i] ?? "").toLowerCase()) break;
    score++;
  }
  return score / MAX_ELEMENT_LEN;
}

/** Sorts by descending score; equal scores keep their input order. */
export function sortByScore(parents: readonly Peer[], score: (p: Peer) => number): Peer[] {
  return parents
    .map((p, i) => ({ p, i, s: score(p) }))
    .sort((x, y) => y.s - x.s || x.i - y.i)
    .map((x) => x.p);
}
