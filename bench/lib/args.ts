// Command-line parsing shared by `npm run bench` and `npm run bench:gate`.
import { Command } from "commander";

export interface BenchArgs {
  suites: string[];
  only: string[];
  json?: string;
  short: boolean;
  results?: string;
  /** Whose daemons the swarm suite runs (issue 19): ours, Dragonfly's, or both mixed. */
  peerImpl: PeerImpl;
}

export type PeerImpl = "damselfly" | "dragonfly" | "mixed";
const PEER_IMPLS: readonly PeerImpl[] = ["damselfly", "dragonfly", "mixed"];

export function parseBenchArgs(name: string, argv: string[], withResults: boolean): BenchArgs {
  const collect = (v: string, prev: string[]) => [...prev, ...v.split(",").filter(Boolean)];
  const program = new Command(name)
    .option("--suite <name>", "suite to run (repeatable or comma-separated)", collect, [] as string[])
    .option("--only <bench>", "only these benchmark names", collect, [] as string[])
    .option("--json <file>", "write the results as JSON to this file")
    .option("--short", "short run (CI): smaller inputs, same comparisons", process.env.BENCH_SHORT === "1")
    .option("--peer-impl <impl>", `the swarm suite's daemons: ${PEER_IMPLS.join(", ")}`, "damselfly");
  if (withResults) program.option("--results <file>", "check this results file instead of running the suites");
  program.parse(argv, { from: "user" });
  const o = program.opts<{ suite: string[]; only: string[]; json?: string; short: boolean; results?: string; peerImpl: string }>();
  const peerImpl = PEER_IMPLS.find((p) => p === o.peerImpl);
  if (!peerImpl) return program.error(`--peer-impl must be one of ${PEER_IMPLS.join(", ")} (got '${o.peerImpl}')`);
  return { suites: o.suite, only: o.only, short: o.short, peerImpl, ...(o.json ? { json: o.json } : {}), ...(o.results ? { results: o.results } : {}) };
}
