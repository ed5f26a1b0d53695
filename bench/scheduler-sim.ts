// Swarm simulation (no network): 200 hosts with mixed upload speeds download one 1 GiB task
// through the real scheduler resource model, filter and evaluator, in simulated time. Pieces
// move at fluid rates: each transfer gets min(parent tx / parent uploads, child rx / child
// downloads); the origin is a shared link. Children pick a parent per piece weighted by spare
// bandwidth, as Dragonfly's client does, and reschedule (blocking their current parents) when
// idle, going to the origin after retryBackToSourceLimit empty rounds. Run once per
// evaluator with the same seed; report mean/p95 completion and origin bytes.
import { Host as HostMessage, Priority, TaskType } from "../src/gen/common/v2/common.js";
import { Peer, PeerEvent } from "../src/scheduler/resource/peer.js";
import { Resource } from "../src/scheduler/resource/resource.js";
import { newEvaluator } from "../src/scheduler/scheduling/evaluator/index.js";
import { Scheduling } from "../src/scheduler/scheduling/scheduling.js";
import { durationResult, percentile } from "./lib/measure.js";
import { mulberry32 } from "./lib/prng.js";
import type { BenchSuite } from "./lib/types.js";

const MiB = 1024 * 1024;

export interface SimOptions {
  hosts: number;
  contentLength: number;
  pieceLength: number;
  seed: number;
  /** Arrivals spread uniformly over this many seconds. */
  arrivalWindow: number;
  /** Origin link, bits/s. */
  originBps: number;
  dt: number;
}

export interface SimResult {
  evaluator: string;
  meanSeconds: number;
  p95Seconds: number;
  maxSeconds: number;
  originBytes: number;
  backToSourcePeers: number;
  simSeconds: number;
}

interface Transfer {
  child: SimPeer;
  parent: SimPeer | undefined; // undefined: origin
  piece: number;
  left: number;
  started: number;
}

interface SimPeer {
  peer: Peer;
  /** Upload (tx) capacity: dfdaemon's upload.bandwidthLimit, which operators set per node. */
  bps: number;
  /** Download (rx) capacity: the NIC. */
  rxBps: number;
  arrival: number;
  registered: boolean;
  done: boolean;
  finishedAt: number;
  backToSource: boolean;
  inflight: Set<number>;
  downloads: Transfer[];
  uploads: number;
  txBits: number;
  idleSince: number;
  retries: number;
  nextAttempt: number;
}

const RETRY_INTERVAL = 0.5;
const RETRY_BACK_TO_SOURCE_LIMIT = 4;
const CONCURRENT_PIECES = 8;
const IDLE_RESCHEDULE = 1.0;
/** Every node downloads at NIC speed; what differs is how much it may upload. */
const RX_BPS = 10e9;

export function simulate(evaluatorName: "default" | "bandwidth", o: SimOptions): SimResult {
  const rng = mulberry32(o.seed);
  const schedRng = mulberry32(o.seed ^ 0x9e3779b9);
  let now = 0;
  const resource = new Resource({ seedPeer: 2000, peer: 200 }, () => Math.round(now * 1000));
  const scheduling = new Scheduling(resource, { retryLimit: 5, retryBackToSourceLimit: RETRY_BACK_TO_SOURCE_LIMIT, retryInterval: 500, filterParentLimit: 15, candidateParentLimit: 3 }, newEvaluator(evaluatorName), { rng: schedRng });
  const pieces = Math.ceil(o.contentLength / o.pieceLength);
  const task = resource.loadOrCreateTask({ id: "s".repeat(64), type: TaskType.STANDARD, url: "https://origin/big", filteredQueryParams: [], requestHeader: {}, contentLength: o.contentLength, pieceLength: o.pieceLength, totalPieceCount: pieces, backToSourceLimit: 200 }).task;
  task.fsm.fire("Download");
  const pieceLen = (n: number) => Math.min(o.pieceLength, o.contentLength - n * o.pieceLength);

  const sims = new Map<string, SimPeer>();
  // Hosts exist from the start; a peer joins the task (and the DAG) only when it arrives.
  const mk = (id: string, type: number, bps: number, arrival: number): SimPeer => {
    const host = resource.announceHost(HostMessage.fromPartial({ id: `h-${id}`, type, hostname: id, ip: "10.0.0.1", port: 4000, downloadPort: 4000, network: { maxTxBandwidth: bps, txBandwidth: 0, maxRxBandwidth: RX_BPS } }));
    const peer = new Peer({ id, priority: Priority.LEVEL0 }, task, host, 0);
    const s: SimPeer = { peer, bps, rxBps: RX_BPS, arrival, registered: false, done: false, finishedAt: 0, backToSource: false, inflight: new Set(), downloads: [], uploads: 0, txBits: 0, idleSince: arrival, retries: 0, nextAttempt: arrival };
    sims.set(id, s);
    return s;
  };
  const join = (s: SimPeer) => {
    s.peer = resource.loadOrCreatePeer({ id: s.peer.id, priority: Priority.LEVEL0 }, task, s.peer.host).peer;
    s.registered = true;
  };
  // The seed peer is triggered by the first download and fetches from the origin.
  const seed = mk("seed", 1, 10e9, 0);
  join(seed);
  seed.backToSource = true;
  seed.peer.fsm.fire(PeerEvent.RegisterNormal);
  seed.peer.fsm.fire(PeerEvent.DownloadBackToSource);
  const speeds = [10e9, 1e9, 1e9, 1e9, 1e9, 1e9, 1e9, 100e6, 100e6, 100e6];
  const children: SimPeer[] = [];
  for (let i = 0; i < o.hosts; i++) children.push(mk(`p${i}`, 0, speeds[Math.floor(rng() * speeds.length)] ?? 1e9, rng() * o.arrivalWindow));

  let originBytes = 0;
  const all = [seed, ...children];
  const holds = (s: SimPeer, n: number) => s.peer.finishedPieces.has(n);

  const tryAssign = (s: SimPeer) => {
    const parents = s.peer.parents().map((p) => sims.get(p.id)).filter((x): x is SimPeer => x !== undefined);
    while (s.downloads.length < CONCURRENT_PIECES) {
      let picked: { n: number; from: SimPeer | undefined } | undefined;
      for (let n = 0; n < pieces && !picked; n++) {
        if (holds(s, n) || s.inflight.has(n)) continue;
        if (s.backToSource) {
          picked = { n, from: undefined };
          break;
        }
        const owners = parents.filter((p) => holds(p, n));
        if (owners.length === 0) continue;
        // Weighted by spare upload bandwidth (Dragonfly's parent selector).
        const weights = owners.map((p) => Math.max(p.bps - p.txBits, p.bps * 0.1));
        let r = rng() * weights.reduce((a, b) => a + b, 0);
        let idx = 0;
        while (idx < owners.length - 1 && r > (weights[idx] ?? 0)) r -= weights[idx++] ?? 0;
        picked = { n, from: owners[idx] };
      }
      if (!picked) return;
      s.inflight.add(picked.n);
      s.downloads.push({ child: s, parent: picked.from, piece: picked.n, left: pieceLen(picked.n), started: now });
      if (picked.from) picked.from.uploads++;
    }
  };

  const schedule = (s: SimPeer) => {
    if (now < s.nextAttempt) return;
    resource.deleteParents(s.peer);
    const candidates = scheduling.findCandidateParents(s.peer, s.peer.blockParents);
    const added = candidates.length > 0 ? resource.addParents(s.peer, candidates) : [];
    if (added.length > 0) {
      s.retries = 0;
      s.idleSince = now;
      if (!s.peer.fsm.is("Running")) s.peer.fsm.fire(PeerEvent.Download);
      return;
    }
    s.retries++;
    if (s.retries >= RETRY_BACK_TO_SOURCE_LIMIT) {
      s.backToSource = true;
      task.backToSourcePeers.add(s.peer.id);
      s.peer.fsm.fire(PeerEvent.DownloadBackToSource);
      return;
    }
    s.nextAttempt = now + RETRY_INTERVAL * (0.5 + schedRng());
  };

  let remaining = children.length;
  let lastTxUpdate = 0;
  const txWindow = new Map<SimPeer, number>();
  while (remaining > 0 && now < 3600) {
    for (const s of children) {
      if (s.done || now < s.arrival) continue;
      if (!s.registered) {
        join(s);
        s.peer.fsm.fire(PeerEvent.RegisterNormal);
        s.peer.blockParents.add(s.peer.id);
        s.nextAttempt = now;
      }
      if (!s.backToSource && s.peer.parents().length === 0) schedule(s);
      if (s.backToSource || s.peer.parents().length > 0) tryAssign(s);
      if (!s.backToSource && s.downloads.length === 0 && s.peer.parents().length > 0 && now - s.idleSince > IDLE_RESCHEDULE) {
        // Reschedule: every current parent is blocked, as the Rust client's request implies.
        for (const p of s.peer.parents()) s.peer.blockParents.add(p.id);
        resource.deleteParents(s.peer);
        s.nextAttempt = now;
        schedule(s);
      }
    }
    tryAssign(seed);

    // Rates for this step.
    const originActive = all.reduce((a, s) => a + s.downloads.filter((t) => !t.parent).length, 0);
    for (const s of all) {
      for (const t of [...s.downloads]) {
        const down = s.rxBps / s.downloads.length;
        const up = t.parent ? t.parent.bps / Math.max(1, t.parent.uploads) : o.originBps / Math.max(1, originActive);
        const bits = Math.min(down, up) * o.dt;
        const bytes = Math.min(t.left, bits / 8);
        t.left -= bytes;
        if (t.parent) txWindow.set(t.parent, (txWindow.get(t.parent) ?? 0) + bytes * 8);
        else originBytes += bytes;
        if (t.left <= 0) {
          s.downloads.splice(s.downloads.indexOf(t), 1);
          s.inflight.delete(t.piece);
          s.peer.finishedPieces.add(t.piece);
          const cost = now + o.dt - t.started;
          s.peer.pieceCosts.add(cost * 1000);
          s.idleSince = now;
          if (t.parent) {
            t.parent.uploads--;
            t.parent.peer.host.recordUpload(pieceLen(t.piece), cost, Math.round(now * 1000));
          }
        }
      }
      if (!s.done && s.peer.finishedPieces.size === pieces) {
        s.done = true;
        s.finishedAt = now + o.dt;
        s.peer.fsm.fire(PeerEvent.DownloadSucceeded);
        resource.deleteParents(s.peer);
        if (s !== seed) remaining--;
      }
    }
    now += o.dt;
    // Hosts report their transmit rate about once a second (announce / SyncHost).
    if (now - lastTxUpdate >= 1) {
      for (const s of all) {
        const bitsPerSecond = (txWindow.get(s) ?? 0) / (now - lastTxUpdate);
        s.txBits = bitsPerSecond;
        const net = s.peer.host.message.network;
        if (net) net.txBandwidth = Math.round(bitsPerSecond);
      }
      txWindow.clear();
      lastTxUpdate = now;
    }
  }
  const times = children.map((s) => (s.done ? s.finishedAt - s.arrival : now - s.arrival));
  return {
    evaluator: evaluatorName,
    meanSeconds: times.reduce((a, b) => a + b, 0) / times.length,
    p95Seconds: percentile(times, 95),
    maxSeconds: Math.max(...times),
    originBytes,
    backToSourcePeers: children.filter((s) => s.backToSource).length,
    simSeconds: now,
  };
}

const suite: BenchSuite = {
  suite: "scheduler",
  benchmarks: [
    {
      name: "scheduler-sim-p95-bandwidth-vs-default",
      run: (ctx) => {
        const o: SimOptions = { hosts: 200, contentLength: 1024 * MiB, pieceLength: 4 * MiB, seed: 1, arrivalWindow: 5, originBps: 2e9, dt: ctx.short ? 0.05 : 0.02 };
        // Several swarms (host speeds and arrivals drawn per seed); both evaluators see the same ones.
        const seeds = ctx.short ? [1, 2, 3] : [1, 2, 3, 4, 5];
        const runs = seeds.map((seed) => ({ seed, d: simulate("default", { ...o, seed }), b: simulate("bandwidth", { ...o, seed }) }));
        for (const r of runs) {
          ctx.log(`sim seed ${r.seed}: default mean ${r.d.meanSeconds.toFixed(2)} s p95 ${r.d.p95Seconds.toFixed(2)} s origin ${(r.d.originBytes / MiB).toFixed(0)} MiB | bandwidth mean ${r.b.meanSeconds.toFixed(2)} s p95 ${r.b.p95Seconds.toFixed(2)} s origin ${(r.b.originBytes / MiB).toFixed(0)} MiB`);
        }
        const avg = (f: (r: (typeof runs)[number]) => number) => runs.reduce((a, r) => a + f(r), 0) / runs.length;
        const result = durationResult("scheduler-sim-p95-bandwidth-vs-default", "s", avg((r) => r.b.p95Seconds), avg((r) => r.d.p95Seconds), "default-evaluator-p95", {
          hosts: o.hosts,
          contentBytes: o.contentLength,
          seeds,
          table: runs.map((r) => ({ seed: r.seed, default: r.d, bandwidth: r.b })),
          meanSeconds: { default: avg((r) => r.d.meanSeconds), bandwidth: avg((r) => r.b.meanSeconds) },
          originBytes: { default: avg((r) => r.d.originBytes), bandwidth: avg((r) => r.b.originBytes) },
        });
        return Promise.resolve(result);
      },
    },
  ],
};

export default suite;
