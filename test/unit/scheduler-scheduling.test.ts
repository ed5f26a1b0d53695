import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { AbEvaluator, armOf } from "../../src/scheduler/scheduling/evaluator/ab.js";
import { BandwidthEvaluator } from "../../src/scheduler/scheduling/evaluator/bandwidth.js";
import { concurrencyScore, DefaultEvaluator, hostTypeScore, peakBandwidthUsageScore } from "../../src/scheduler/scheduling/evaluator/default.js";
import { isBadParent, locationAffinityScore } from "../../src/scheduler/scheduling/evaluator/evaluator.js";
import { evaluatorFromConfig } from "../../src/scheduler/scheduling/evaluator/index.js";
import { filterCandidateParents } from "../../src/scheduler/scheduling/filter.js";
import { Scheduling, SchedulingError } from "../../src/scheduler/scheduling/scheduling.js";
import { resolveSchedulerConfig } from "../../src/scheduler/config.js";
import { PeerEvent } from "../../src/scheduler/resource/peer.js";
import { addHost, addPeer, addTask, BACK_TO_SOURCE, newResource, RUNNING, seededRng, SUCCEEDED } from "./scheduler-fixtures.js";

const cfg = { retryLimit: 5, retryBackToSourceLimit: 4, retryInterval: 10, filterParentLimit: 15, candidateParentLimit: 3 };

describe("filter", () => {
  it("rejects blocked, shared-off, same-host, full, not-serving, bad and cyclic parents with a reason", () => {
    const { resource } = newResource();
    const task = addTask(resource);
    addHost(resource, "noshare", { disableShared: true });
    const child = addPeer(resource, "child", task, "hc", RUNNING);
    const ok = addPeer(resource, "ok", task, "h1", SUCCEEDED);
    addPeer(resource, "blocked", task, "h2", SUCCEEDED);
    addPeer(resource, "noshare-peer", task, "noshare", SUCCEEDED);
    addPeer(resource, "same", task, "hc", SUCCEEDED);
    addPeer(resource, "idle", task, "h3", RUNNING); // normal host, running, no parents yet
    addHost(resource, "seed-h", { type: 1 });
    addPeer(resource, "pending", task, "seed-h"); // seeds skip the not-serving rule; Pending is bad
    const full = addPeer(resource, "full", task, "h5", SUCCEEDED);
    full.host.concurrentUploadCount = full.host.concurrentUploadLimit;
    const descendant = addPeer(resource, "descendant", task, "h6", RUNNING);
    resource.addParents(descendant, [child]); // child → descendant; descendant → child would cycle
    const r = filterCandidateParents(child, new Set(["child", "blocked"]), { filterParentLimit: 100, evaluator: new DefaultEvaluator() });
    expect(r.candidates.map((p) => p.id)).toEqual([ok.id]);
    expect(Object.fromEntries(r.rejected)).toEqual({
      child: "blocked",
      blocked: "blocked",
      "noshare-peer": "disable-shared",
      same: "same-host",
      idle: "not-serving",
      pending: "bad-parent",
      full: "upload-limit",
      descendant: "cycle",
    });
  });

  it("a seed host is a parent while still fetching from the origin; a normal host needs parents or the origin", () => {
    const { resource } = newResource();
    const task = addTask(resource);
    addHost(resource, "seed", { type: 1 });
    const child = addPeer(resource, "child", task, "hc", RUNNING);
    addPeer(resource, "seed-peer", task, "seed", RUNNING);
    addPeer(resource, "b2s", task, "h1", BACK_TO_SOURCE);
    const r = filterCandidateParents(child, new Set([child.id]), { filterParentLimit: 15, evaluator: new DefaultEvaluator() });
    expect(r.candidates.map((p) => p.id).sort()).toEqual(["b2s", "seed-peer"]);
  });

  it("samples at most filterParentLimit peers", () => {
    const { resource } = newResource();
    const task = addTask(resource);
    const child = addPeer(resource, "child", task, "hc", RUNNING);
    for (let i = 0; i < 100; i++) addPeer(resource, `p${i}`, task, `h${i}`, SUCCEEDED);
    const r = filterCandidateParents(child, new Set(), { filterParentLimit: 15, evaluator: new DefaultEvaluator(), rng: seededRng(3) });
    expect(r.candidates.length + r.rejected.size).toBe(15);
  });
});

describe("bad parent", () => {
  it("is bad in non-serving states, and on cost outliers (20× mean while filling)", () => {
    const { resource } = newResource();
    const task = addTask(resource);
    const p = addPeer(resource, "p", task, "h1", RUNNING);
    expect(isBadParent(p)).toBe(false);
    p.pieceCosts.add(10);
    expect(isBadParent(p)).toBe(false);
    p.pieceCosts.add(100);
    expect(isBadParent(p)).toBe(false);
    p.pieceCosts.add(2000);
    expect(isBadParent(p)).toBe(true);
    const q = addPeer(resource, "q", task, "h2", [PeerEvent.RegisterNormal]);
    expect(isBadParent(q)).toBe(true);
  });

  it("uses mean + 3σ once the window is full", () => {
    const { resource } = newResource();
    const p = addPeer(resource, "p", addTask(resource), "h1", RUNNING);
    for (let i = 0; i < 1999; i++) p.pieceCosts.add(100 + (i % 3));
    p.pieceCosts.add(110);
    expect(isBadParent(p)).toBe(true);
    p.pieceCosts.add(101);
    expect(isBadParent(p)).toBe(false);
  });
});

describe("default evaluator", () => {
  it("weights load, IDC, location and host type as Dragonfly does", () => {
    const { resource, clock } = newResource();
    const task = addTask(resource);
    addHost(resource, "child-h", { idc: "idc1", location: "a|b|c" });
    addHost(resource, "near", { idc: "idc1", location: "a|b|c", maxTx: 1e9 });
    addHost(resource, "far", { idc: "idc2", location: "x", maxTx: 1e9 });
    addHost(resource, "busy", { idc: "idc1", location: "a|b|c", maxTx: 1e9, tx: 9e8 });
    const child = addPeer(resource, "child", task, "child-h", RUNNING);
    const near = addPeer(resource, "near-p", task, "near", SUCCEEDED);
    const far = addPeer(resource, "far-p", task, "far", SUCCEEDED);
    const busy = addPeer(resource, "busy-p", task, "busy", SUCCEEDED);
    const e = new DefaultEvaluator();
    // Idle 1 Gbps normal host, same IDC and location: 0.6·1 + 0.2 + 0.1 + 0.1·0.5.
    expect(e.score(near, child, clock.t)).toBeCloseTo(0.95, 6);
    expect(e.score(far, child, clock.t)).toBeCloseTo(0.65, 6);
    expect(e.evaluateParents([far, busy, near], child, clock.t).map((p) => p.id)).toEqual(["near-p", "busy-p", "far-p"]);
    expect(peakBandwidthUsageScore(busy)).toBeCloseTo(0.1, 6);
    expect(locationAffinityScore("a|b|c|d", "a|b|x")).toBeCloseTo(0.4, 6);
  });

  it("scores concurrency against what the link carries and seeds by their state", () => {
    const { resource } = newResource();
    const task = addTask(resource);
    addHost(resource, "slow", { maxTx: 100e6 });
    addHost(resource, "fast", { maxTx: 10e9 });
    addHost(resource, "seed", { type: 1 });
    expect(concurrencyScore(addPeer(resource, "s", task, "slow", SUCCEEDED))).toBe(0);
    const fast = addPeer(resource, "f", task, "fast", SUCCEEDED);
    expect(concurrencyScore(fast)).toBe(1);
    fast.host.concurrentUploadCount = 149; // needs ≈74.5 pieces in flight for 10 Gbps
    expect(concurrencyScore(fast)).toBeCloseTo(0.5, 2);
    expect(hostTypeScore(addPeer(resource, "sd", task, "seed", RUNNING))).toBe(1);
    expect(hostTypeScore(addPeer(resource, "sd2", task, "seed", SUCCEEDED))).toBe(0);
    expect(hostTypeScore(fast)).toBe(0.5);
  });
});

describe("bandwidth evaluator", () => {
  it("prefers spare bandwidth per child, then completeness", () => {
    const { resource, clock } = newResource();
    const task = addTask(resource);
    addHost(resource, "fast", { maxTx: 10e9 });
    addHost(resource, "slow", { maxTx: 100e6 });
    addHost(resource, "fast-busy", { maxTx: 10e9 });
    const child = addPeer(resource, "child", task, "hc", RUNNING);
    const fast = addPeer(resource, "fast-p", task, "fast", SUCCEEDED);
    const slow = addPeer(resource, "slow-p", task, "slow", SUCCEEDED);
    const busy = addPeer(resource, "busy-p", task, "fast-busy", SUCCEEDED);
    busy.host.concurrentUploadCount = 400;
    const e = new BandwidthEvaluator();
    expect(e.evaluateParents([slow, busy, fast], child, clock.t).map((p) => p.id)).toEqual(["fast-p", "slow-p", "busy-p"]);
    // 4 MiB piece over an idle 10 Gbps link ≈ 3.4 ms.
    expect(e.predictPieceSeconds(fast, child)).toBeCloseTo((4 * 1024 * 1024 * 8) / 10e9, 6);
  });

  it("a running parent serves held pieces at its share and the rest at its own measured inbound rate", () => {
    const { resource, clock } = newResource();
    const task = addTask(resource); // 10 pieces of 4 MiB
    const child = addPeer(resource, "child", task, "hc", RUNNING);
    const done = addPeer(resource, "done", task, "h0", SUCCEEDED);
    const half = addPeer(resource, "half", task, "h1", RUNNING);
    for (let n = 0; n < 5; n++) half.finishedPieces.add(n);
    clock.advance(10_000); // half received 5 pieces in 10 s: 2 s per piece
    const e = new BandwidthEvaluator();
    const perPiece = e.predictPieceSeconds(done, child);
    expect(e.predictSeconds(done, child, clock.t)).toBeCloseTo(10 * perPiece, 9);
    expect(e.inboundPieceSeconds(half, clock.t)).toBeCloseTo(2, 9);
    expect(e.predictSeconds(half, child, clock.t)).toBeCloseTo(5 * perPiece + 5 * 2, 9);
    child.finishedPieces.add(0);
    expect(e.predictSeconds(half, child, clock.t)).toBeCloseTo(4 * perPiece + 5 * 2, 9);
    expect(e.evaluateParents([half, done], child, clock.t).map((p) => p.id)).toEqual(["done", "half"]);
    const liar = addPeer(resource, "liar", task, "h2", SUCCEEDED);
    const before = e.predictPieceSeconds(liar, child);
    liar.host.recordUpload(4 * 1024 * 1024, 4, clock.t); // measured ~8 Mbps on a "1 Gbps" host
    expect(e.predictPieceSeconds(liar, child)).toBeGreaterThan(before * 5);
  });
});

describe("A/B evaluator", () => {
  it("splits child hosts by hash and delegates to the arm's evaluator", () => {
    const ab = evaluatorFromConfig(resolveSchedulerConfig({ scheduler: { algorithm: "ab" } }).scheduler);
    expect(ab).toBeInstanceOf(AbEvaluator);
    const arms = new Set<string>();
    for (let i = 0; i < 50; i++) arms.add(armOf(`10.0.0.${i}-host`));
    expect(arms).toEqual(new Set(["a", "b"]));
    expect(armOf("same-host")).toBe(armOf("same-host"));
    const { resource } = newResource();
    const task = addTask(resource);
    const c = addPeer(resource, "c", task, "10.0.0.1-host", RUNNING);
    const chosen = (ab as AbEvaluator).evaluatorFor(c).name;
    expect(chosen).toBe(armOf("10.0.0.1-host") === "a" ? "default" : "bandwidth");
  });
});

describe("scheduling loop", () => {
  const noSleep = { sleep: () => Promise.resolve(), rng: seededRng(9) };

  it("returns the best parents and records the edges", async () => {
    const { resource } = newResource();
    const task = addTask(resource);
    const child = addPeer(resource, "child", task, "hc", RUNNING);
    for (let i = 0; i < 5; i++) addPeer(resource, `p${i}`, task, `h${i}`, SUCCEEDED);
    const s = new Scheduling(resource, cfg, new DefaultEvaluator(), noSleep);
    const out = await s.scheduleCandidateParents(child, new Set([child.id]));
    expect(out.kind).toBe("normal");
    if (out.kind === "normal") expect(out.parents).toHaveLength(3);
    expect(child.parents()).toHaveLength(3);
  });

  it("sends to the origin when asked, after retryBackToSourceLimit, and fails after retryLimit without quota", async () => {
    const { resource } = newResource();
    const task = addTask(resource);
    const child = addPeer(resource, "child", task, "hc", RUNNING);
    const sleeps: number[] = [];
    const s = new Scheduling(resource, cfg, new DefaultEvaluator(), { rng: () => 0.5, sleep: (ms) => (sleeps.push(ms), Promise.resolve()) });
    child.needBackToSource = true;
    expect(await s.scheduleCandidateParents(child, new Set())).toEqual({ kind: "back-to-source", description: "peer's NeedBackToSource is true" });
    child.needBackToSource = false;
    expect(await s.scheduleCandidateParents(child, new Set())).toEqual({ kind: "back-to-source", description: "scheduling exceeded RetryBackToSourceLimit" });
    expect(sleeps).toEqual([10, 10, 10, 10]);
    for (let i = 0; i <= 200; i++) task.backToSourcePeers.add(`b${i}`);
    const err = await s.scheduleCandidateParents(child, new Set()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchedulingError);
    expect((err as SchedulingError).code).toBe(status.FAILED_PRECONDITION);
    expect(sleeps).toHaveLength(9);
  });

  /** Sleeps the test ends by hand, in the order they were asked for. */
  function heldSleeps() {
    const asked: Array<{ ms: number; end: () => void }> = [];
    const sleep = (ms: number) => new Promise<void>((resolve) => asked.push({ ms, end: resolve }));
    return { asked, sleep };
  }
  const ticks = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };

  it("a peer waiting for parents takes one as soon as a peer of the task starts serving, within the round", async () => {
    const { resource } = newResource();
    const task = addTask(resource);
    const child = addPeer(resource, "child", task, "hc", RUNNING);
    addHost(resource, "seed-h", { type: 1 });
    // Registered, not downloading yet: no parent for anyone.
    const seed = addPeer(resource, "seed", task, "seed-h", [PeerEvent.RegisterNormal]);
    const held = heldSleeps();
    const s = new Scheduling(resource, { ...cfg, retryInterval: 1000 }, new DefaultEvaluator(), { rng: () => 0.5, sleep: held.sleep, now: () => 0 });
    const out = s.scheduleCandidateParents(child, new Set([child.id]));
    await ticks();
    expect(held.asked.map((a) => a.ms)).toEqual([1000]);
    seed.fsm.fire(PeerEvent.DownloadBackToSource);
    // The round's sleep never ended: the change alone brought the seed in.
    expect(await out).toEqual({ kind: "normal", parents: [seed] });
    expect(child.parents()).toEqual([seed]);
  });

  it("a change that brings no parent keeps the peer waiting out its round, and tries are spaced", async () => {
    const { resource } = newResource();
    const task = addTask(resource);
    const child = addPeer(resource, "child", task, "hc", RUNNING);
    const held = heldSleeps();
    const clock = { t: 0 };
    const s = new Scheduling(resource, { ...cfg, retryInterval: 1000 }, new DefaultEvaluator(), { rng: () => 0.5, sleep: held.sleep, now: () => clock.t });
    const out = s.scheduleCandidateParents(child, new Set([child.id]));
    await ticks();
    // A peer that serves nobody yet starts downloading; the change wakes the waiting peer for
    // nothing.
    addPeer(resource, "idle", task, "h1", RUNNING);
    await ticks();
    clock.t = 300;
    // A pause before the next try, then the rest of the round.
    expect(held.asked.map((a) => a.ms)).toEqual([1000, 20]);
    held.asked[1]?.end();
    await ticks();
    expect(held.asked.map((a) => a.ms)).toEqual([1000, 20, 700]);
    held.asked[2]?.end();
    await ticks();
    // Round two has started, a whole interval: the change neither ended round one early nor
    // stood for a round of its own.
    expect(held.asked.map((a) => a.ms)).toEqual([1000, 20, 700, 1000]);
    child.needBackToSource = true;
    for (const a of held.asked.slice(3)) a.end();
    expect(await out).toEqual({ kind: "back-to-source", description: "peer's NeedBackToSource is true" });
  });

  it("stops when the peer's stream is gone", async () => {
    const { resource } = newResource();
    const child = addPeer(resource, "child", addTask(resource), "hc", RUNNING);
    const s = new Scheduling(resource, cfg, new DefaultEvaluator(), noSleep);
    await expect(s.scheduleCandidateParents(child, new Set(), () => false)).rejects.toMatchObject({ code: status.CANCELLED });
  });
});
