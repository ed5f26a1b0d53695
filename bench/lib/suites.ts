// Finds bench suites: every bench/*.ts (not the runner or gate) default-exports a BenchSuite.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { PeerImpl } from "./args.js";
import type { BenchContext, BenchResult, BenchSuite } from "./types.js";

const benchDir = fileURLToPath(new URL("..", import.meta.url));
// soak.ts is a command of its own (`npm run soak`), with its own flags and gate.
const NOT_SUITES = new Set(["run.ts", "gate.ts", "soak.ts"]);

export async function loadSuites(): Promise<BenchSuite[]> {
  const files = readdirSync(benchDir).filter((f) => f.endsWith(".ts") && !NOT_SUITES.has(f)).sort();
  const suites: BenchSuite[] = [];
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(benchDir, f)).href)) as { default?: BenchSuite };
    if (!mod.default || typeof mod.default.suite !== "string" || !Array.isArray(mod.default.benchmarks)) {
      throw new Error(`bench/${f} does not default-export a BenchSuite`);
    }
    suites.push(mod.default);
  }
  return suites;
}

export interface RunOptions {
  suites: string[];
  only: string[];
  short: boolean;
  peerImpl?: PeerImpl;
}

export async function runSuites(opts: RunOptions): Promise<BenchResult[]> {
  const all = await loadSuites();
  const known = new Set(all.map((s) => s.suite));
  for (const s of opts.suites) if (!known.has(s)) throw new Error(`unknown bench suite '${s}' (known: ${[...known].sort().join(", ")})`);
  const chosen = all.filter((s) => opts.suites.length === 0 || opts.suites.includes(s.suite));
  const results: BenchResult[] = [];
  const workDir = mkdtempSync(join(process.env.DAMSELFLY_BENCH_DIR ?? tmpdir(), "damselfly-bench-"));
  const ctx: BenchContext = { short: opts.short, peerImpl: opts.peerImpl ?? "damselfly", workDir, log: (m) => process.stderr.write(`bench: ${m}\n`) };
  try {
    for (const suite of chosen) {
      for (const b of suite.benchmarks) {
        if (opts.only.length > 0 && !opts.only.includes(b.name)) continue;
        ctx.log(`${suite.suite}/${b.name} ...`);
        const r = await b.run(ctx);
        ctx.log(`${r.name}: ours ${fmt(r.ours)} ${r.unit}, ${r.baselineName} ${fmt(r.baseline)} ${r.unit}, ratio ${r.ratio.toFixed(3)}`);
        results.push(r);
      }
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
  return results;
}

function fmt(n: number): string {
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toPrecision(4);
}
