// Runs the given vitest projects (and, for `unit`, the Rust core's cargo tests), then prints
// one plain closing line `N passed, N failed` with the real counts, which CI reads.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const projects = process.argv.slice(2);
const extra = process.env.VITEST_ARGS ? process.env.VITEST_ARGS.split(" ").filter(Boolean) : [];
let passed = 0;
let failed = 0;
let skipped = 0;
let broken = false;

if (projects.includes("unit") && process.env.DAMSELFLY_SKIP_CARGO_TEST !== "1") {
  const cargo = spawnSync("cargo", ["test", "--manifest-path", "native/Cargo.toml", "--workspace", "--release"], {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  process.stdout.write(cargo.stdout ?? "");
  const results = [...(cargo.stdout ?? "").matchAll(/test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored/g)];
  for (const m of results) {
    passed += Number(m[1]);
    failed += Number(m[2]);
    skipped += Number(m[3]);
  }
  if (cargo.status !== 0 && results.every((m) => m[2] === "0")) broken = true;
}

const dir = mkdtempSync(join(tmpdir(), "damselfly-vitest-"));
const jsonFile = join(dir, "results.json");
const args = ["vitest", "run", ...projects.flatMap((p) => ["--project", p]), "--reporter=default", "--reporter=json", `--outputFile.json=${jsonFile}`, "--passWithNoTests", ...extra];
const vitest = spawnSync("npx", args, { cwd: root, stdio: "inherit" });
try {
  const report = JSON.parse(readFileSync(jsonFile, "utf8"));
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  skipped += report.numPendingTests + (report.numTodoTests ?? 0);
  // A file that fails to load counts no test but must still fail the run.
  const loadFailures = (report.testResults ?? []).filter((f) => f.status === "failed" && f.assertionResults.length === 0).length;
  failed += loadFailures;
} catch {
  broken = true;
}
rmSync(dir, { recursive: true, force: true });
if (vitest.status !== 0 && failed === 0) broken = true;
if (broken) failed = Math.max(failed, 1);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exitCode = failed > 0 ? 1 : 0;
