// Our evaluator: rank parents by the predicted time for this child to get its missing pieces
// from them. The rate a new child would get is the parent host's spare transmit capacity
// (announced capacity minus current traffic, cross-checked against the throughput children
// measured) divided among its current children plus this one. A parent that is still
// downloading serves the pieces it already holds at that rate and the rest no faster than it
// receives them itself, which its own piece reports measure.
import { PeerState, type Peer } from "../../resource/peer.js";
import { type Evaluator, idcAffinityScore, isBadParent, locationAffinityScore, sortByScore } from "./evaluator.js";

/** Assumed capacity of a host that announced none and was never measured (bits/s). */
export const UNKNOWN_CAPACITY_BPS = 100e6;
/** Even a saturated link gives a newcomer some share (Dragonfly's client uses 10%). */
const MIN_SPARE_FRACTION = 0.1;
const DEFAULT_PIECE_BITS = 4 * 1024 * 1024 * 8;

export class BandwidthEvaluator implements Evaluator {
  readonly name = "bandwidth";

  evaluateParents(parents: readonly Peer[], child: Peer, now: number): Peer[] {
    return sortByScore(parents, (p) => 1 / this.predictSeconds(p, child, now));
  }

  /** Predicted seconds for `parent` alone to deliver every piece `child` still lacks. */
  predictSeconds(parent: Peer, child: Peer, now: number): number {
    const perPiece = this.predictPieceSeconds(parent, child);
    const total = child.task.totalPieceCount;
    const missing = total > 0 ? Math.max(1, total - child.finishedPieces.size) : 1;
    if (parent.fsm.is(PeerState.Succeeded)) return missing * perPiece;
    let useful = 0;
    for (const n of parent.finishedPieces) if (!child.finishedPieces.has(n)) useful++;
    useful = Math.min(useful, missing);
    // Pieces the parent does not hold yet arrive at its own inbound rate at best.
    const inbound = this.inboundPieceSeconds(parent, now);
    const later = inbound === undefined ? perPiece * 2 : Math.max(perPiece, inbound);
    return useful * perPiece + (missing - useful) * later;
  }

  /** Measured seconds per piece the parent itself receives (undefined before any piece). */
  inboundPieceSeconds(parent: Peer, now: number): number | undefined {
    const n = parent.finishedPieces.size;
    if (n === 0) return undefined;
    const elapsed = Math.max(1, now - parent.createdAt) / 1000;
    return elapsed / n;
  }

  isBadParent(peer: Peer): boolean {
    return isBadParent(peer);
  }

  /** Expected seconds until the child holds one more piece served by `parent`. */
  predictPieceSeconds(parent: Peer, child: Peer): number {
    const host = parent.host;
    const announced = host.maxTxBandwidth;
    const measured = host.uploadSpeed.samples > 0 ? host.uploadSpeed.bytesPerSecond * 8 : 0;
    let capacity = announced > 0 ? announced : measured > 0 ? measured : UNKNOWN_CAPACITY_BPS;
    // A link that delivered less than it claims is judged by what it delivered.
    if (announced > 0 && measured > 0) capacity = Math.min(announced, Math.max(measured, announced * MIN_SPARE_FRACTION));
    const spare = Math.max(capacity - host.txBandwidth, capacity * MIN_SPARE_FRACTION);
    const share = spare / (host.concurrentUploadCount + 1);
    const pieceBits = child.task.pieceLength > 0 ? child.task.pieceLength * 8 : DEFAULT_PIECE_BITS;
    let seconds = pieceBits / share;
    // Failed uploads cost a retry elsewhere.
    seconds *= 1 + host.uploadFailedCount / (host.uploadCount + 1);
    // Same IDC / nearby location: shorter paths; a mild preference, never dominant.
    seconds /= 1 + 0.1 * idcAffinityScore(host.idc, child.host.idc) + 0.05 * locationAffinityScore(host.location, child.host.location);
    return seconds;
  }

}
