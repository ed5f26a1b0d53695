// Generates TypeScript (ts-proto, grpc-js services) from proto/ with buf. Output goes to
// src/gen unless a directory is given; src/gen is committed and checked for drift by
// scripts/check-generated.mjs.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
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
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  generateProto(process.argv[2] ? resolve(process.argv[2]) : undefined);
}
