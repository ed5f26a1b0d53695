// Where a swarm's time goes, piece by piece. The last peer finishes when the last piece has
// first entered the swarm (the seed peer's upload, which trails its own back-to-source) plus
// the time that piece, and every other, takes to spread from its first peer to all of them:
// with store-and-forward pieces each hop costs a whole piece transfer, so the spread, not the
// link rate, is what separates a swarm from the ideal. The bench reports both parts.
import type { ProgressSample } from "../../test/e2e/harness/swarm.js";
import { percentile, round3 } from "./measure.js";

export interface SpreadSummary {
  pieces: number;
  /** When the last piece to arrive reached its first peer (seconds since the downloads began). */
  lastFirstCopyS: number;
  /** Per piece, from its first peer to its last: quantiles in seconds. */
  spreadS: { p50: number; p90: number; max: number };
  /** Median time one piece request took (queueing at the parent included), in seconds. */
  pieceCostP50S: number;
  /** Each peer's bytes over its time from first piece to last, as a share of its link. */
  receiveUtilization: { mean: number; min: number };
}

const seconds = (ms: number) => round3(ms / 1000);

/** Sums up per-piece samples of one swarm download; `linkBytesPerSec` is each host's link rate. */
export function pieceSpread(peers: readonly ProgressSample[][], linkBytesPerSec: number): SpreadSummary {
  const landed = new Map<number, number[]>();
  const costs: number[] = [];
  const utilization: number[] = [];
  for (const samples of peers) {
    for (const s of samples) {
      if (!s.piece) continue;
      const at = landed.get(s.piece.number) ?? [];
      at.push(s.t);
      landed.set(s.piece.number, at);
      costs.push(s.piece.costMs);
    }
    const first = samples.find((s) => s.piece);
    const last = samples[samples.length - 1];
    if (first && last && last.t > first.t) utilization.push((last.bytes - first.bytes) / ((last.t - first.t) / 1000) / linkBytesPerSec);
  }
  const firsts = [...landed.values()].map((ts) => Math.min(...ts));
  const spreads = [...landed.values()].map((ts) => Math.max(...ts) - Math.min(...ts));
  return {
    pieces: landed.size,
    lastFirstCopyS: seconds(firsts.length > 0 ? Math.max(...firsts) : 0),
    spreadS: { p50: seconds(percentile(spreads, 50)), p90: seconds(percentile(spreads, 90)), max: seconds(percentile(spreads, 100)) },
    pieceCostP50S: seconds(percentile(costs, 50)),
    receiveUtilization: {
      mean: round3(utilization.length > 0 ? utilization.reduce((a, b) => a + b, 0) / utilization.length : 0),
      min: round3(utilization.length > 0 ? Math.min(...utilization) : 0),
    },
  };
}
