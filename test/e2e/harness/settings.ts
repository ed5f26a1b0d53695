// Sizes of the e2e swarm scenarios. The defaults are the (16 peers, 128 MiB, 100 Mbit/s);
// CI runs them smaller through the environment so that it stays inside its time.
import { netnsSupport } from "./netns.js";

function envInt(name: string, def: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}: "${v}" is not a positive integer`);
  return n;
}

export const settings = {
  /** Peers besides the seed peer in scenario 1/2. */
  peers: envInt("DAMSELFLY_E2E_PEERS", 16),
  /** Peers in the fault scenarios. */
  faultPeers: envInt("DAMSELFLY_E2E_FAULT_PEERS", 6),
  sizeMiB: envInt("DAMSELFLY_E2E_SIZE_MIB", 128),
  mbit: envInt("DAMSELFLY_E2E_MBIT", 100),
  concurrent: envInt("DAMSELFLY_E2E_CONCURRENT", 200),
};

export const support = netnsSupport();
if (!support.ok) process.stderr.write(`\n*** e2e swarm scenarios SKIPPED: ${support.reason} ***\n\n`);
export const skipReason = support.ok ? "" : ` (SKIPPED: ${support.reason})`;
