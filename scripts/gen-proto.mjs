// Generates TypeScript (ts-proto, grpc-js services) from proto/ with buf. Output goes to
// src/gen unless a directory is given; src/gen is committed and checked for drift by
// scripts/check-generated.mjs.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

// 64-bit integers. The generated types use `number` (forceLong=number): the code does
// arithmetic on lengths, counts and bandwidths, and `forceLong=bigint` breaks 133 use sites in
// 26 files (forceLong=string: 176 in 30) for no gain, since every quantity we act on stays far
// below 2^53. But ts-proto's decoder helper *throws* above Number.MAX_SAFE_INTEGER, and a
// throwing decoder makes grpc-js fail the whole call with "Internal error: Error deserializing
// request". Dragonfly's Rust dfdaemon reports `host.memory.cgroup.limit = 9223372036854771712`
// (cgroup "unlimited") in every AnnounceHost, and any other int64/uint64 statistic can do the
// same, so the helper is rewritten to clamp to ±Number.MAX_SAFE_INTEGER instead: values within
// ±2^53-1 still decode exactly, larger ones become "as large as we can represent". Encoding is
// untouched (writer.int64/uint64 write every safe integer exactly).
const THROWING_LONG_TO_NUMBER = `function longToNumber(int64: { toString(): string }): number {
  const num = globalThis.Number(int64.toString());
  if (num > globalThis.Number.MAX_SAFE_INTEGER) {
    throw new globalThis.Error("Value is larger than Number.MAX_SAFE_INTEGER");
  }
  if (num < globalThis.Number.MIN_SAFE_INTEGER) {
    throw new globalThis.Error("Value is smaller than Number.MIN_SAFE_INTEGER");
  }
  return num;
}`;
const CLAMPING_LONG_TO_NUMBER = `// Rewritten by scripts/gen-proto.mjs: clamps instead of throwing, so that a huge int64/uint64
// (e.g. Dragonfly's cgroup memory limit 9223372036854771712) never fails a whole request.
function longToNumber(int64: { toString(): string }): number {
  const num = globalThis.Number(int64.toString());
  if (num > globalThis.Number.MAX_SAFE_INTEGER) {
    return globalThis.Number.MAX_SAFE_INTEGER;
  }
  if (num < globalThis.Number.MIN_SAFE_INTEGER) {
    return globalThis.Number.MIN_SAFE_INTEGER;
  }
  return num;
}`;

function tsFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** Replaces every generated `longToNumber`; fails loudly when ts-proto emits a different one. */
function clampLongs(outDir) {
  for (const file of tsFiles(outDir)) {
    const text = readFileSync(file, "utf8");
    if (!text.includes("function longToNumber(")) continue;
    if (!text.includes(THROWING_LONG_TO_NUMBER)) {
      throw new Error(`${file}: ts-proto's longToNumber changed; update the clamping rewrite in scripts/gen-proto.mjs`);
    }
    writeFileSync(file, text.replace(THROWING_LONG_TO_NUMBER, CLAMPING_LONG_TO_NUMBER));
  }
}

export function generateProto(outDir = resolve(root, "src/gen")) {
  rmSync(outDir, { recursive: true, force: true });
  const template = {
    version: "v2",
    plugins: [
      {
        local: resolve(root, "node_modules/.bin/protoc-gen-ts_proto"),
        out: outDir,
        opt: [
          "esModuleInterop=true",
          "importSuffix=.js",
          "outputServices=grpc-js",
          "env=node",
          "forceLong=number",
          "oneof=unions",
          "useDate=true",
          "useOptionals=messages",
        ],
      },
    ],
  };
  execFileSync(resolve(root, "node_modules/.bin/buf"), ["generate", "proto", "--template", JSON.stringify(template)], {
    cwd: root,
    stdio: "inherit",
  });
  clampLongs(outDir);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  generateProto(process.argv[2] ? resolve(process.argv[2]) : undefined);
}
