#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/cli/dfdaemon.js (built by `npm ci` through `prepare`).
import { main } from "../dist/cli/dfdaemon.js";

process.exitCode = await main(process.argv.slice(2));
