// Scenario 4: 200 concurrent dfget downloads of one URL on one daemon. They share one task:
// the origin is fetched once (by the seed peer the scheduler triggers, or by the peer itself),
// and all 200 outputs verify.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settings, skipReason, support } from "./harness/settings.js";
import { sha256File, Swarm } from "./harness/swarm.js";

const SIZE = Math.min(settings.sizeMiB, 64) << 20;
const K = settings.concurrent;

describe.skipIf(!support.ok)(`${K} concurrent downloads of one URL on one daemon${skipReason}`, () => {
  let swarm: Swarm;
  let work: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "e2e-concurrent-"));
    swarm = await Swarm.start({ workDir: work, peers: 1, mbit: settings.mbit, manager: false, files: [{ name: "one.bin", size: SIZE }], log: (m) => console.log(m) });
  });

  afterAll(async () => {
    await swarm?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("one back-to-source, one task, every output verifies", async () => {
    const peer = swarm.peers[0];
    if (!peer) throw new Error("no peer");
    const outs = Array.from({ length: K }, (_, i) => join(work, `out-${i}`));
    const results = await Promise.all(outs.map((o) => swarm.download(peer, swarm.url("one.bin"), o)));
    const sha = swarm.files.get("one.bin")?.sha256;
    for (const [i, r] of results.entries()) {
      expect(r.error, `download ${i}`).toBeUndefined();
      expect(sha256File(outs[i] as string), `output ${i}`).toBe(sha);
    }
    expect(new Set(results.map((r) => r.taskId)).size).toBe(1);
    // Content bytes left the origin once, to a single host (1-byte range probes aside).
    const bodies = swarm.originRequests().filter((q) => q.bytes > 1);
    const fetchers = new Set(bodies.map((q) => q.from));
    console.log(`origin: ${bodies.length} content requests from ${[...fetchers].join(", ")}, ${(swarm.originBytes() / SIZE).toFixed(3)} x the file`);
    expect(fetchers.size).toBe(1);
    expect(swarm.originBytes()).toBeGreaterThanOrEqual(SIZE);
    expect(swarm.originBytes()).toBeLessThanOrEqual(1.05 * SIZE);
  });
});
