// The dedicated fuzz run (issue 21): every fuzz target, Rust (proptest, native/core's
// `fuzz_*` tests) and TypeScript (fast-check, test/unit/proxy-fuzz.test.ts), for `--cases N`
// inputs each, then one line per target with the inputs it really ran and its wall time.
//   npm run fuzz -- --cases 1000000
// CI runs the same targets with their small default count inside `npm test`.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
const at = args.indexOf("--cases");
const cases = at >= 0 ? args[at + 1] : undefined;
if (cases === undefined || !/^\d+$/.test(cases) || Number(cases) < 1 || args.length !== 2) {
  console.error("usage: npm run fuzz -- --cases N   (N inputs per target, e.g. 1000000)");
  process.exit(2);
}
const env = { ...process.env, DAMSELFLY_FUZZ_CASES: cases };
const runs = [
  ["cargo", ["test", "--manifest-path", "native/Cargo.toml", "-p", "damselfly-core", "--release", "--lib", "fuzz", "--", "--nocapture", "--test-threads=1"]],
  ["npx", ["vitest", "run", "test/unit/proxy-fuzz.test.ts"]],
];
const lines = [];
let failed = false;
for (const [cmd, argv] of runs) {
  const r = spawnSync(cmd, argv, { cwd: root, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
  process.stdout.write(r.stdout ?? "");
  process.stderr.write(r.stderr ?? "");
  // Each target prints `fuzz <target>: <n> inputs in <s> s` when it finishes.
  for (const m of `${r.stdout}\n${r.stderr}`.matchAll(/^.*?(fuzz [^:\n]+: \d+ inputs in [\d.]+ s)$/gm)) lines.push(m[1]);
  if (r.status !== 0) failed = true;
}
console.log(`\nfuzz summary (${cases} cases per target):`);
for (const l of lines) console.log(`  ${l}`);
const short = lines.filter((l) => Number(/: (\d+) inputs/.exec(l)?.[1]) < Number(cases));
if (short.length > 0 || lines.length === 0) failed = true;
console.log(failed ? "fuzz: FAILED" : `fuzz: ${lines.length} targets passed`);
process.exitCode = failed ? 1 : 0;
