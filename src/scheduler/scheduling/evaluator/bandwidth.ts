// Our evaluator: rank parents by the predicted time for this child to receive a piece from
// them. The rate a new child would get is the parent host's spare transmit capacity (announced
// capacity minus current traffic, cross-checked against the throughput children measured)
// divided among its current children plus this one; a parent that is still downloading is
// discounted by how many of the child's missing pieces it already holds.
import { PeerState, type Peer } from "../../resource/peer.js";
import { type Evaluator, idcAffinityScore, isBadParent, locationAffinityScore, sortByScore } from "./evaluator.js";

/** Assumed capacity of a host that announced none and was never measured (bits/s). */
export const UNKNOWN_CAPACITY_BPS = 100e6;
/** Even a saturated link gives a newcomer some share (Dragonfly's client uses 10%). */
const MIN_SPARE_FRACTION = 0.1;
const DEFAULT_PIECE_BITS = 4 * 1024 * 1024 * 8;

export class BandwidthEvaluator implements Evaluator {
  readonly name = "bandwidth";

  evaluateParents(parents: readonly Peer[], child: Peer, _now: number): Peer[] {
    return sortByScore(parents, (p) => 1 / this.predictPieceSeconds(p, child));
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
    seconds /= this.availability(parent, child);
    // Failed uploads cost a retry elsewhere.
    seconds *= 1 + host.uploadFailedCount / (host.uploadCount + 1);
    // Same IDC / nearby location: shorter paths; a mild preference, never dominant.
    seconds /= 1 + 0.1 * idcAffinityScore(host.idc, child.host.idc) + 0.05 * locationAffinityScore(host.location, child.host.location);
    return seconds;
  }

  /** Fraction of useful pieces a parent can offer now, in (0, 1]. */
  availability(parent: Peer, child: Peer): number {
    // Seeds fetch everything from the origin; finished peers hold everything.
    if (parent.host.isSeed || parent.fsm.is(PeerState.Succeeded)) return 1;
    const total = child.task.totalPieceCount;
    if (total <= 0) return 0.5;
    const missing = Math.max(1, total - child.finishedPieces.size);
    let useful = 0;
    for (const n of parent.finishedPieces) if (!child.finishedPieces.has(n)) useful++;
    // A running parent keeps gaining pieces, so it is never worth nothing.
    return Math.max(0.2, Math.min(1, useful / missing));
  }
}
