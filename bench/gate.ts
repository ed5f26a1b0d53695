// `npm run bench:gate -- [--suite NAME] [--short] [--results FILE] [--json FILE]`: runs the
// suites (or reads a results file) and exits non-zero when a ratio is below its floor in
// bench/floors.json, or when a floor of a suite that ran has no measurement.
import { readFileSync, writeFileSync } from "node:fs";
import { parseBenchArgs } from "./lib/args.js";
import { runSuites } from "./lib/suites.js";
import type { BenchResult } from "./lib/types.js";
import { errorMessage } from "../src/common/errors.js";

interface Floor {
  suite: string;
  floor: number;
}

process.on("uncaughtException", (e) => {
  process.stderr.write(`bench:gate: ${errorMessage(e)}\n`);
  process.exit(2);
});

const args = parseBenchArgs("bench:gate", process.argv.slice(2), true);
const floors = JSON.parse(readFileSync(new URL("./floors.json", import.meta.url), "utf8")) as Record<string, Floor>;
const results: BenchResult[] = args.results
  ? (JSON.parse(readFileSync(args.results, "utf8")) as BenchResult[])
  : await runSuites({ suites: args.suites, only: args.only, short: args.short, peerImpl: args.peerImpl });
if (args.json) writeFileSync(args.json, `${JSON.stringify(results, null, 2)}\n`);

const byName = new Map(results.map((r) => [r.name, r]));
const ranSuites = new Set(args.suites);

// A ratio below its floor is measured once more before it fails the gate: on a shared 2-core
// host, short-mode rounds of a few tenths of a second each miss a floor now and then with code
// that holds it (zstd-compress-l3: 0.886 once, 1.05-1.11 on six reruns of the same build). A
// real regression misses it twice. Both measurements are printed.
const below = (name: string) => {
  const r = byName.get(name);
  const f = floors[name];
  return r !== undefined && f !== undefined && !(r.ratio >= f.floor);
};
const missed = Object.keys(floors).filter(below);
const first = new Map(missed.map((n) => [n, byName.get(n)?.ratio ?? 0]));
if (missed.length > 0 && !args.results) {
  console.log(`bench gate: measuring again: ${missed.join(", ")}`);
  // Whole suites: a suite's benchmarks share their set-up (piece-serve reads what piece-write left).
  for (const r of await runSuites({ suites: [...new Set(missed.map((n) => floors[n]?.suite ?? ""))], only: [], short: args.short, peerImpl: args.peerImpl })) {
    if (first.has(r.name)) byName.set(r.name, r);
  }
  if (args.json) writeFileSync(args.json, `${JSON.stringify([...byName.values()], null, 2)}\n`);
}

const failures: string[] = [];
for (const [name, f] of Object.entries(floors)) {
  const r = byName.get(name);
  if (!r) {
    const expected = !args.results && args.only.length === 0 && (ranSuites.size === 0 || ranSuites.has(f.suite));
    if (expected) failures.push(`${name}: no measurement (suite ${f.suite} ran)`);
    continue;
  }
  const again = first.get(name);
  const line = `${name}: ratio ${r.ratio.toFixed(3)}${again !== undefined ? ` (first ${again.toFixed(3)})` : ""} (floor ${f.floor})`;
  if (!(r.ratio >= f.floor)) failures.push(line);
  else console.log(`ok   ${line}`);
}
for (const f of failures) console.log(`FAIL ${f}`);
console.log(failures.length === 0 ? "bench gate: every floor holds" : `bench gate: ${failures.length} floor(s) broken`);
process.exitCode = failures.length === 0 ? 0 : 1;
