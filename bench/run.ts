// `npm run bench -- [--suite NAME] [--only BENCH] [--json FILE] [--short]`
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { parseBenchArgs } from "./lib/args.js";
import { runSuites } from "./lib/suites.js";
import { errorMessage } from "../src/common/errors.js";

process.on("uncaughtException", (e) => {
  process.stderr.write(`bench: ${errorMessage(e)}\n`);
  process.exit(2);
});

const args = parseBenchArgs("bench", process.argv.slice(2), false);
const results = await runSuites({ suites: args.suites, only: args.only, short: args.short, peerImpl: args.peerImpl });
const text = `${JSON.stringify(results, null, 2)}\n`;
if (args.json) {
  mkdirSync(dirname(args.json), { recursive: true });
  writeFileSync(args.json, text);
} else {
  process.stdout.write(text);
}
