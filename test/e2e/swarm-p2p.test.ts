// Scenarios 1 and 2 of the swarm: a seed peer and N peers fetch one file over 100 Mbit/s links
// (the origin sends it about once), then the same hosts fetch it straight from the origin with
// curl as the baseline (the origin sends it N times). Every output is checked by SHA-256.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settings, skipReason, support } from "./harness/settings.js";
import { sha256File, Swarm } from "./harness/swarm.js";

const SIZE = settings.sizeMiB << 20;
const N = settings.peers;

describe.skipIf(!support.ok)(`swarm of a seed peer and ${N} peers, ${settings.sizeMiB} MiB over ${settings.mbit} Mbit/s links${skipReason}`, () => {
  let swarm: Swarm;
  let work: string;
  let oursLast = 0;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "e2e-p2p-"));
    swarm = await Swarm.start({ workDir: work, peers: N, mbit: settings.mbit, files: [{ name: "big.bin", size: SIZE }], log: (m) => console.log(m) });
  });

  afterAll(async () => {
    await swarm?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("scenario 1: every peer's output verifies and the origin sends the file at most 1.05 times", async () => {
    const file = swarm.files.get("big.bin");
    const before = swarm.peers.map((p) => swarm.counters(p.net));
    const results = await Promise.all(swarm.peers.map((p) => swarm.download(p, swarm.url("big.bin"), join(work, `${p.name}.out`))));
    for (const [i, r] of results.entries()) {
      expect(r.error, swarm.peers[i]?.name).toBeUndefined();
      expect(r.contentLength).toBe(SIZE);
      expect(sha256File(join(work, `${swarm.peers[i]?.name}.out`))).toBe(file?.sha256);
    }
    const egress = swarm.originBytes();
    console.log(`scenario 1: origin sent ${(egress / SIZE).toFixed(3)} x the file; last peer after ${Math.max(...results.map((r) => r.ms))} ms`);
    expect(egress).toBeGreaterThanOrEqual(SIZE);
    expect(egress).toBeLessThanOrEqual(1.05 * SIZE);
    // Every peer received at least the file over its own link.
    for (const [i, p] of swarm.peers.entries()) expect(swarm.counters(p.net).rx - (before[i]?.rx ?? 0)).toBeGreaterThanOrEqual(SIZE);
    // And the bytes came from the swarm: seed peer plus peers sent at least N files' worth.
    const sent = swarm.daemons.reduce((a, d) => a + swarm.counters(d.net).tx, 0);
    expect(sent).toBeGreaterThanOrEqual(N * SIZE);
    oursLast = Math.max(...results.map((r) => r.ms));
  });

  it("scenario 2: the same hosts with curl straight from the origin (baseline): the origin sends the file N times", async () => {
    const file = swarm.files.get("big.bin");
    const before = swarm.originBytes();
    const results = await Promise.all(swarm.peers.map((p) => swarm.curl(p.net, swarm.url("big.bin"), join(work, `${p.name}.direct`))));
    for (const [i, r] of results.entries()) {
      expect(r.error, swarm.peers[i]?.name).toBeUndefined();
      expect(sha256File(join(work, `${swarm.peers[i]?.name}.direct`))).toBe(file?.sha256);
    }
    expect(swarm.originBytes() - before).toBe(N * SIZE);
    console.log(`scenario 2: direct last host after ${Math.max(...results.map((r) => r.ms))} ms (swarm: ${oursLast} ms)`);
  });
});
