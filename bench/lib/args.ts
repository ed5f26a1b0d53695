// Command-line parsing shared by `npm run bench` and `npm run bench:gate`.
import { Command } from "commander";

export interface BenchArgs {
  suites: string[];
  only: string[];
  json?: string;
  short: boolean;
  results?: string;
}

export function parseBenchArgs(name: string, argv: string[], withResults: boolean): BenchArgs {
  const collect = (v: string, prev: string[]) => [...prev, ...v.split(",").filter(Boolean)];
  const program = new Command(name)
    .option("--suite <name>", "suite to run (repeatable or comma-separated)", collect, [] as string[])
    .option("--only <bench>", "only these benchmark names", collect, [] as string[])
    .option("--json <file>", "write the results as JSON to this file")
    .option("--short", "short run (CI): smaller inputs, same comparisons", process.env.BENCH_SHORT === "1");
  if (withResults) program.option("--results <file>", "check this results file instead of running the suites");
  program.parse(argv, { from: "user" });
  const o = program.opts<{ suite: string[]; only: string[]; json?: string; short: boolean; results?: string }>();
  return { suites: o.suite, only: o.only, short: o.short, ...(o.json ? { json: o.json } : {}), ...(o.results ? { results: o.results } : {}) };
}
