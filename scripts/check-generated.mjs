// Fails when committed generated code no longer matches its source: the ts-proto output in
// src/gen (from proto/) and the napi-rs loader + typings in native/binding (from the Rust
// exports). Both are regenerated into a temporary directory and compared byte for byte.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { generateProto } from "./gen-proto.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "damselfly-gen-"));
const drift = [];

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

function compareTrees(expectedDir, committedDir, label) {
  const want = new Map(files(expectedDir).map((p) => [relative(expectedDir, p), p]));
  const have = new Map(files(committedDir).map((p) => [relative(committedDir, p), p]));
  for (const [rel, p] of want) {
    const h = have.get(rel);
    if (!h) drift.push(`${label}: ${rel} is missing (run the generator and commit it)`);
    else if (!readFileSync(h).equals(readFileSync(p))) drift.push(`${label}: ${rel} differs from a fresh generation`);
  }
  for (const rel of have.keys()) if (!want.has(rel)) drift.push(`${label}: ${rel} is stale (no longer generated)`);
}

try {
  generateProto(join(tmp, "gen"));
  compareTrees(join(tmp, "gen"), resolve(root, "src/gen"), "proto → src/gen (npm run gen:proto)");

  execFileSync(
    resolve(root, "node_modules/.bin/napi"),
    ["build", "--platform", "--release", "--manifest-path", "native/binding/Cargo.toml", "--package-json-path", "package.json",
      "--output-dir", join(tmp, "binding"), "--js", "index.cjs", "--dts", "index.d.cts"],
    { cwd: root, stdio: ["ignore", "ignore", "inherit"] },
  );
  for (const f of ["index.cjs", "index.d.cts"]) {
    const committed = resolve(root, "native/binding", f);
    if (!readFileSync(committed).equals(readFileSync(join(tmp, "binding", f)))) {
      drift.push(`Rust exports → native/binding/${f} differs from a fresh napi build (npm run build:native)`);
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

// `npm ci` rebuilds the loader in place, so a stale committed copy would be silently
// replaced in the work tree: compare against the commit too.
try {
  const changed = execFileSync("git", ["status", "--porcelain", "--", "src/gen", "native/binding/index.cjs", "native/binding/index.d.cts"], {
    cwd: root,
    encoding: "utf8",
  }).trim();
  if (changed) drift.push(`generated files differ from the commit:\n${changed}`);
} catch {
  // Not a git checkout (e.g. a container build): the work-tree comparison above is all we can do.
}

if (drift.length > 0) {
  for (const d of drift) console.error(`generated code drift: ${d}`);
  process.exit(1);
}
console.log("generated code is up to date");
