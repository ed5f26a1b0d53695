// The one result shape every benchmark writes. `ratio` always reads "how many times better
// ours is than the baseline" (> 1: ours wins), whatever the unit: for throughputs it is
// ours / baseline, for durations and latencies baseline / ours.
import type { PeerImpl } from "./args.js";

export interface BenchResult {
  name: string;
  unit: string;
  ours: number;
  baseline: number;
  baselineName: string;
  ratio: number;
  /** Anything else a reader wants next to the numbers (sizes, rounds, fallbacks). */
  details?: Record<string, unknown>;
}

export interface BenchContext {
  /** CI asks for a short run: smaller inputs, fewer rounds, same comparisons. */
  short: boolean;
  /** Scratch directory for this run, removed afterwards. */
  workDir: string;
  log: (msg: string) => void;
  /** Whose daemons the swarm suite runs (`--peer-impl`). */
  peerImpl: PeerImpl;
}

export interface Benchmark {
  name: string;
  run: (ctx: BenchContext) => Promise<BenchResult>;
}

export interface BenchSuite {
  suite: string;
  benchmarks: Benchmark[];
}
