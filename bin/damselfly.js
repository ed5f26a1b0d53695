#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/cli/damselfly.js (built by `npm ci` through `prepare`).
import { main } from "../dist/cli/damselfly.js";

process.exitCode = await main(process.argv.slice(2));
