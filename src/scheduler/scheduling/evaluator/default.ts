// Dragonfly's current default evaluator: 0.6 load quality + 0.2 IDC affinity + 0.1 location
// affinity + 0.1 host type, where load quality is 0.5 peak-bandwidth headroom + 0.3 recent
// upload volume against capacity + 0.2 upload concurrency against what the link can carry.
import { PeerState, type Peer } from "../../resource/peer.js";
import { type Evaluator, idcAffinityScore, isBadParent, locationAffinityScore, MAX_SCORE, MIN_SCORE, sortByScore } from "./evaluator.js";

const LOAD_QUALITY_WEIGHT = 0.6;
const IDC_AFFINITY_WEIGHT = 0.2;
const LOCATION_AFFINITY_WEIGHT = 0.1;
const HOST_TYPE_WEIGHT = 0.1;
const PEAK_BANDWIDTH_USAGE_WEIGHT = 0.5;
const BANDWIDTH_DURATION_WEIGHT = 0.3;
const CONCURRENCY_WEIGHT = 0.2;
/** Window over which recent upload volume is judged, seconds. */
const DURATION_WINDOW_SECONDS = 60;
/** Piece size Dragonfly assumes when judging concurrency. */
const CONCURRENCY_PIECE_LENGTH = 16 * 1024 * 1024;

export class DefaultEvaluator implements Evaluator {
  readonly name = "default";

  evaluateParents(parents: readonly Peer[], child: Peer, now: number): Peer[] {
    return sortByScore(parents, (p) => this.score(p, child, now));
  }

  isBadParent(peer: Peer): boolean {
    return isBadParent(peer);
  }

  score(parent: Peer, child: Peer, now: number): number {
    return (
      LOAD_QUALITY_WEIGHT * this.loadQuality(parent, now) +
      IDC_AFFINITY_WEIGHT * idcAffinityScore(parent.host.idc, child.host.idc) +
      LOCATION_AFFINITY_WEIGHT * locationAffinityScore(parent.host.location, child.host.location) +
      HOST_TYPE_WEIGHT * hostTypeScore(parent)
    );
  }

  loadQuality(parent: Peer, now: number): number {
    return (
      PEAK_BANDWIDTH_USAGE_WEIGHT * peakBandwidthUsageScore(parent) +
      BANDWIDTH_DURATION_WEIGHT * bandwidthDurationScore(parent, now) +
      CONCURRENCY_WEIGHT * concurrencyScore(parent)
    );
  }
}

export function peakBandwidthUsageScore(parent: Peer): number {
  const max = parent.host.maxTxBandwidth;
  if (max === 0) return MIN_SCORE;
  const tx = parent.host.txBandwidth;
  if (tx >= max) return MIN_SCORE;
  return 1 - tx / max;
}

export function bandwidthDurationScore(parent: Peer, now: number): number {
  const max = parent.host.maxTxBandwidth;
  if (max === 0) return MIN_SCORE;
  const uploaded = parent.host.recentUploadBytes(now);
  if (uploaded === 0) return MAX_SCORE;
  const ratio = (uploaded * 8) / max / DURATION_WINDOW_SECONDS;
  return ratio >= 1 ? MIN_SCORE : 1 - ratio;
}

export function concurrencyScore(parent: Peer): number {
  const max = parent.host.maxTxBandwidth;
  if (max === 0) return MIN_SCORE;
  const needed = max / CONCURRENCY_PIECE_LENGTH / 8;
  if (needed <= 1) return MIN_SCORE;
  const concurrent = parent.host.concurrentUploadCount;
  if (concurrent === 0) return MAX_SCORE;
  const ratio = concurrent / needed;
  return ratio <= 1 ? MAX_SCORE : 1 / ratio;
}

/** Seed hosts are best while they are fetching or serving; normal hosts score half. */
export function hostTypeScore(parent: Peer): number {
  if (parent.host.isSeed) return parent.fsm.is(PeerState.ReceivedNormal, PeerState.Running) ? MAX_SCORE : MIN_SCORE;
  return MAX_SCORE * 0.5;
}
