// `npm run bench -- --suite swarm`: a seed peer and N peers (N = 4, 16, 32) fetch 128 MiB
// files (see FIRST_TASK) over emulated 100 Mbit/s links (one network namespace per host, see
// test/e2e/harness), against the same hosts fetching one with curl straight from the origin.
// Reports the last peer's completion time against the ideal (file size / link bandwidth) and
// against the direct baseline, the origin's egress, each host's CPU seconds, and where the time
// went (details.pieces: when the last piece entered the swarm, how long pieces took to reach
// every peer); writes an SVG of per-peer completion over time next to the JSON results (or
// into bench/results/). The links serve small packets first (see LinkQueue);
// DAMSELFLY_SWARM_QUEUE=fifo gives them one shared queue instead.
//
// --short (CI's bench gate) runs N = 16 only, on 16 MiB files, so the gated names exist.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { netnsSupport, type LinkQueue } from "../test/e2e/harness/netns.js";
import { completionSvg } from "../test/e2e/harness/plot.js";
import { sha256File, Swarm, type DaemonHost, type DownloadOutcome } from "../test/e2e/harness/swarm.js";
import { round3 } from "./lib/measure.js";
import { pieceSpread, type SpreadSummary } from "./lib/spread.js";
import type { PeerImpl } from "./lib/args.js";
import type { BenchContext, BenchResult, BenchSuite } from "./lib/types.js";

const MBIT = 100;

/**
 * Each swarm fetches four tasks one after another, each a URL no daemon has seen, so each goes
 * through the seed peer's back-to-source. The first runs on daemons that just started. Each
 * of them then compiles every code path it runs (V8 compiles lazily), 17 processes at once on
 * two shared cores. At 16 peers that task ended 0.1–1.1 s later than the next one (0.6 s on
 * average over nine swarms), and its first piece left the seed peer about 0.6 s later.
 * Daemons in a cluster are resident and have served tasks before, so the results come from
 * the other three: the one whose last peer finished in the median time. At 16 peers single
 * tasks on warm daemons ranged 14.9–16.1 s (20 samples). The first task's time and egress are reported in
 * details.firstTask, each measured task's in details.tasks.
 */
const FIRST_TASK = "first.bin";
const MEASURED_TASKS = ["f1.bin", "f2.bin", "f3.bin"];

/** DAMSELFLY_SWARM_QUEUE=fifo runs the swarm on one shared queue per link end (see LinkQueue). */
function linkQueue(): LinkQueue {
  const q = process.env.DAMSELFLY_SWARM_QUEUE ?? "sparse-first";
  if (q !== "sparse-first" && q !== "fifo") throw new Error(`DAMSELFLY_SWARM_QUEUE: "${q}" is not a link queue (sparse-first or fifo)`);
  return q;
}

interface Measurement {
  n: number;
  impl: PeerImpl;
  /** Ran with mTLS everywhere (issue 21). */
  tls: boolean;
  size: number;
  idealS: number;
  oursS: number;
  /** The curl baseline; absent when the run skipped it (DAMSELFLY_SWARM_DIRECT=0). */
  direct: { s: number; egress: number } | undefined;
  oursEgress: number;
  cpu: Record<string, number>;
  peers: Array<{ name: string; oursS: number; directS: number | undefined }>;
  /** Where the swarm's time went: when the last piece entered it, and how long pieces took to spread. */
  pieces: SpreadSummary;
  plot: string;
  /** The task before the measured ones, on daemons that had just started. */
  firstTask: { lastPeerS: number; originEgress: number };
  /** Each measured task; the results are the median one's. */
  tasks: Array<{ lastPeerS: number; originEgress: number }>;
  /** What the links were: the queue they had and the hosts' TCP congestion control. */
  link: { queue: LinkQueue; congestionControl: string };
}

/** Where the plot goes: next to `--json FILE` when given, else bench/results/. */
function plotDir(): string {
  const i = process.argv.indexOf("--json");
  const json = i >= 0 ? process.argv[i + 1] : undefined;
  return json ? dirname(json) : join(fileURLToPath(new URL(".", import.meta.url)), "results");
}

// One measurement per swarm size, daemon implementation and run; a second run (the gate
// measuring again) measures anew.
const cache = new WeakMap<BenchContext, Map<string, Promise<Measurement>>>();

function measure(n: number, ctx: BenchContext, impl: PeerImpl = ctx.peerImpl, tls = false): Promise<Measurement> {
  let perRun = cache.get(ctx);
  if (!perRun) {
    perRun = new Map();
    cache.set(ctx, perRun);
  }
  const key = `${impl}:${n}${tls ? ":tls" : ""}`;
  let m = perRun.get(key);
  if (!m) {
    m = run(n, ctx, impl, tls);
    perRun.set(key, m);
  }
  return m;
}

async function run(n: number, ctx: BenchContext, impl: PeerImpl, tls: boolean): Promise<Measurement> {
  const support = netnsSupport();
  if (!support.ok) throw new Error(`swarm bench needs network namespaces: ${support.reason}`);
  const size = (ctx.short ? 16 : 128) << 20;
  const work = mkdtempSync(join(ctx.workDir, `swarm-${impl}${tls ? "-mtls" : ""}-n${n}-`));
  const files = [FIRST_TASK, ...MEASURED_TASKS].map((name) => ({ name, size }));
  const swarm = await Swarm.start({ workDir: work, peers: n, mbit: MBIT, queue: linkQueue(), files, log: ctx.log, peerImpl: impl, tls });
  try {
    /** Every peer fetches `file` into `<peer>.<suffix>`; all outputs must verify (then go). */
    const fetchAll = async (file: string, suffix: string, fetch: (p: DaemonHost, url: string, out: string) => Promise<DownloadOutcome>) => {
      const egress0 = swarm.originBytes();
      const rs = await Promise.all(swarm.peers.map((p) => fetch(p, swarm.url(file), join(work, `${p.name}.${suffix}`))));
      const sha = swarm.files.get(file)?.sha256;
      for (const [i, r] of rs.entries()) {
        const name = swarm.peers[i]?.name ?? "";
        if (!r.ok) throw new Error(`${name}: ${r.error}`);
        if (sha256File(join(work, `${name}.${suffix}`)) !== sha) throw new Error(`${name}: ${file} does not verify`);
        rmSync(join(work, `${name}.${suffix}`));
      }
      return { file, rs, egress: (swarm.originBytes() - egress0) / size, lastS: Math.max(...rs.map((r) => r.ms)) / 1000 };
    };
    const viaSwarm = (p: DaemonHost, url: string, out: string) => swarm.download(p, url, out);
    const first = await fetchAll(FIRST_TASK, "first", viaSwarm);
    const cpu0 = new Map(swarm.daemons.map((d) => [d.name, swarm.cpuSeconds(d.proc)]));
    const sched0 = swarm.cpuSeconds(swarm.schedulerProc);
    const tasks = [];
    for (const file of MEASURED_TASKS) tasks.push(await fetchAll(file, "ours", viaSwarm));
    const measured = [...tasks].sort((a, b) => a.lastS - b.lastS)[Math.floor(tasks.length / 2)] ?? first;
    const ours = measured.rs;
    // Per task: the CPU of all measured tasks over their number.
    const perTask = (seconds: number) => round3(seconds / tasks.length);
    const cpu: Record<string, number> = { scheduler: perTask(swarm.cpuSeconds(swarm.schedulerProc) - sched0) };
    for (const d of swarm.daemons) cpu[d.name] = perTask(swarm.cpuSeconds(d.proc) - (cpu0.get(d.name) ?? 0));
    // 16 hosts curling 128 MiB through the origin's one link take 3 minutes: a run that only
    // needs the swarm's own ratios (e.g. the mTLS one against the ideal) may skip it.
    const directRun = process.env.DAMSELFLY_SWARM_DIRECT === "0" ? undefined : await fetchAll(measured.file, "direct", (p, url, out) => swarm.curl(p.net, url, out));
    const direct = directRun?.rs ?? [];
    const idealS = (size * 8) / (MBIT * 1e6);
    const oursS = measured.lastS;
    // Every task is the swarm's: the origin must not serve any of them more than once.
    const oursEgress = Math.max(first.egress, ...tasks.map((t) => t.egress));
    const dir = plotDir();
    mkdirSync(dir, { recursive: true });
    const plot = join(dir, `swarm-${impl === "damselfly" ? "" : `${impl}-`}${tls ? "mtls-" : ""}n${n}.svg`);
    writeFileSync(
      plot,
      completionSvg(`${n} peers, ${size >> 20} MiB, ${MBIT} Mbit/s links`, size, idealS, [
        { title: `swarm, first task (last peer ${first.lastS.toFixed(1)} s)`, peers: first.rs.map((r) => r.samples) },
        { title: `swarm, median of ${tasks.length} later tasks (last peer ${oursS.toFixed(1)} s)`, peers: ours.map((r) => r.samples) },
        ...(directRun ? [{ title: `curl from the origin (last ${directRun.lastS.toFixed(1)} s)`, peers: direct.map((r) => r.samples) }] : []),
      ]),
    );
    const pieces = pieceSpread(
      ours.map((r) => r.samples),
      (MBIT * 1e6) / 8,
    );
    ctx.log(`swarm n=${n} (${impl} daemons${tls ? ", mTLS" : ""}): ours ${oursS.toFixed(2)} s, direct ${directRun ? `${directRun.lastS.toFixed(2)} s` : "skipped"}, ideal ${idealS.toFixed(2)} s, origin egress ${oursEgress.toFixed(3)}x; tasks ${tasks.map((t) => t.lastS.toFixed(2)).join(", ")} s, the first after the daemons started ${first.lastS.toFixed(2)} s; plot ${plot}`);
    ctx.log(`swarm n=${n}: last piece entered the swarm at ${pieces.lastFirstCopyS} s, pieces spread to every peer in ${pieces.spreadS.p50} s (p50) / ${pieces.spreadS.max} s (max), peers received at ${pieces.receiveUtilization.mean} of their link`);
    return {
      n,
      impl,
      tls,
      size,
      idealS,
      oursS,
      direct: directRun && { s: directRun.lastS, egress: directRun.egress },
      oursEgress,
      firstTask: { lastPeerS: first.lastS, originEgress: first.egress },
      tasks: tasks.map((t) => ({ lastPeerS: t.lastS, originEgress: t.egress })),
      cpu,
      peers: swarm.peers.map((p, i) => ({ name: p.name, oursS: round3((ours[i]?.ms ?? 0) / 1000), directS: directRun && round3((direct[i]?.ms ?? 0) / 1000) })),
      pieces,
      plot,
      link: { queue: swarm.net.queue, congestionControl: swarm.net.congestionControl(swarm.seed.net) },
    };
  } finally {
    await swarm.close();
    rmSync(work, { recursive: true, force: true });
  }
}

function details(m: Measurement): Record<string, unknown> {
  return { peerImpl: m.impl, mtls: m.tls, peers: m.n, fileBytes: m.size, linkMbit: MBIT, linkQueue: m.link.queue, tcpCongestionControl: m.link.congestionControl, idealSeconds: round3(m.idealS), directSeconds: m.direct && round3(m.direct.s), firstTask: { lastPeerSeconds: round3(m.firstTask.lastPeerS), originEgress: round3(m.firstTask.originEgress) }, tasks: m.tasks.map((t) => ({ lastPeerSeconds: round3(t.lastPeerS), originEgress: round3(t.originEgress) })), cpuSeconds: m.cpu, perPeer: m.peers, pieces: m.pieces, plot: m.plot };
}

function needDirect(m: Measurement): { s: number; egress: number } {
  if (!m.direct) throw new Error("this benchmark compares with curl from the origin, which DAMSELFLY_SWARM_DIRECT=0 skipped");
  return m.direct;
}

function benchmarksFor(n: number) {
  return [
    {
      name: `swarm-origin-egress-n${n}`,
      run: async (ctx: BenchContext): Promise<BenchResult> => {
        const m = await measure(n, ctx);
        const d = needDirect(m);
        return { name: `swarm-origin-egress-n${n}`, unit: "x file size", ours: round3(m.oursEgress), baseline: round3(d.egress), baselineName: "curl from the origin", ratio: d.egress / m.oursEgress, details: details(m) };
      },
    },
    {
      name: `swarm-vs-ideal-n${n}`,
      run: async (ctx: BenchContext): Promise<BenchResult> => {
        const m = await measure(n, ctx);
        return { name: `swarm-vs-ideal-n${n}`, unit: "s", ours: round3(m.oursS), baseline: round3(m.idealS), baselineName: "file size / link bandwidth", ratio: m.idealS / m.oursS, details: details(m) };
      },
    },
    {
      name: `swarm-vs-direct-n${n}`,
      run: async (ctx: BenchContext): Promise<BenchResult> => {
        const m = await measure(n, ctx);
        const d = needDirect(m);
        return { name: `swarm-vs-direct-n${n}`, unit: "s", ours: round3(m.oursS), baseline: round3(d.s), baselineName: "curl from the origin", ratio: d.s / m.oursS, details: details(m) };
      },
    },
    // Issue 21: the same swarm with mTLS on every gRPC and piece connection; its own ratio to the
    // ideal (the issue asks >= 0.7), and beside it the plaintext run's.
    ...(n === 16
      ? [
          {
            name: `swarm-vs-ideal-mtls-n${n}`,
            run: async (ctx: BenchContext): Promise<BenchResult> => {
              const m = await measure(n, ctx, "damselfly", true);
              return { name: `swarm-vs-ideal-mtls-n${n}`, unit: "s", ours: round3(m.oursS), baseline: round3(m.idealS), baselineName: "file size / link bandwidth", ratio: m.idealS / m.oursS, details: details(m) };
            },
          },
        ]
      : []),
    // Reported, not gated (issue 19): the same run with Dragonfly's published daemons under the
    // same scheduler, links and files; > 1 when our daemons finish the last peer sooner.
    ...(n === 16
      ? [
          {
            name: `swarm-vs-dragonfly-n${n}`,
            run: async (ctx: BenchContext): Promise<BenchResult> => {
              const ours = await measure(n, ctx, "damselfly");
              const theirs = await measure(n, ctx, "dragonfly");
              return { name: `swarm-vs-dragonfly-n${n}`, unit: "s", ours: round3(ours.oursS), baseline: round3(theirs.oursS), baselineName: "Dragonfly's dfdaemon (client 1.5.10) as every daemon, same scheduler", ratio: theirs.oursS / ours.oursS, details: { ours: details(ours), dragonfly: details(theirs) } };
            },
          },
        ]
      : []),
  ];
}

// The short run (CI) does N = 16 only; 32 peers are 35 processes on two cores, so it is
// opt-in with DAMSELFLY_SWARM_N32=1.
const short = process.argv.includes("--short") || process.env.BENCH_SHORT === "1";
const sizes = short ? [16] : [4, 16, ...(process.env.DAMSELFLY_SWARM_N32 === "1" ? [32] : [])];

const suite: BenchSuite = { suite: "swarm", benchmarks: sizes.flatMap(benchmarksFor) };
export default suite;
