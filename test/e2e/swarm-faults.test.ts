// Scenario 3: faults during transfers. Each fault gets a file (so a task) of its own on one
// swarm: a parent peer killed, the seed peer killed, the scheduler restarted, the origin
// answering 503 for 10 s, a peer whose link drops 30% of its packets, and a peer that serves
// corrupted pieces. Every other download completes and verifies; the corrupt peer is blocked.
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settings, skipReason, support } from "./harness/settings.js";
import { sha256File, Swarm, type DaemonHost, type DownloadOutcome, type RunningDownload } from "./harness/swarm.js";

const SIZE = settings.sizeMiB << 20;
const M = settings.faultPeers;
// The seed peer asks the origin for 8 pieces at a time: the 503 file has more pieces than that
// (at least 96 MiB, 24 pieces), so requests are still to come when the origin starts failing.
const SIZE_503 = Math.max(SIZE, 96 << 20);
const FILES = ["parent", "seed", "scheduler", "loss", "corrupt"].map((n) => ({ name: `${n}.bin`, size: SIZE })).concat({ name: "origin503.bin", size: SIZE_503 });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!support.ok)(`swarm faults: seed peer and ${M} peers, ${settings.sizeMiB} MiB files${skipReason}`, () => {
  let swarm: Swarm;
  let work: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "e2e-faults-"));
    swarm = await Swarm.start({ workDir: work, peers: M, mbit: settings.mbit, manager: false, files: FILES, log: (m) => console.log(m) });
  });

  afterAll(async () => {
    await swarm?.close();
    rmSync(work, { recursive: true, force: true });
  });

  const out = (file: string, d: DaemonHost) => join(work, `${file}.${d.name}`);
  const start = (file: string, hosts: DaemonHost[]) => hosts.map((d) => swarm.startDownload(d, swarm.url(file), out(file, d)));

  /** Waits until the downloads hold `fraction` of the file on average (or all ended). */
  async function untilProgress(running: RunningDownload[], fraction: number): Promise<void> {
    let ended = false;
    void Promise.all(running.map((r) => r.done)).then(() => (ended = true));
    while (!ended && running.reduce((a, r) => a + r.bytes(), 0) / running.length < fraction * SIZE) await sleep(100);
  }

  function expectVerified(file: string, d: DaemonHost, r: DownloadOutcome): void {
    expect(r.error, `${file} on ${d.name}`).toBeUndefined();
    expect(sha256File(out(file, d)), `${file} on ${d.name}`).toBe(swarm.files.get(file)?.sha256);
  }

  /** Checks every download and reports all failures at once, not just the first. */
  function expectAllVerified(file: string, running: RunningDownload[], results: DownloadOutcome[], except?: DaemonHost): void {
    const problems: string[] = [];
    for (const [i, r] of running.entries()) {
      if (r.host === except) continue;
      const res = results[i] as DownloadOutcome;
      if (!res.ok) problems.push(`${r.host.name}: ${res.error}`);
      else if (sha256File(r.outputPath) !== swarm.files.get(file)?.sha256) problems.push(`${r.host.name}: output does not verify`);
    }
    expect(problems, `${file}`).toEqual([]);
  }

  async function ensureRunning(d: DaemonHost): Promise<void> {
    if (!d.proc?.running) await swarm.startDaemon(d);
  }

  it("a parent peer killed mid-transfer: the others finish from other parents", async () => {
    const file = "parent.bin";
    const [first, ...rest] = swarm.peers as [DaemonHost, ...DaemonHost[]];
    const head = start(file, [first]);
    await untilProgress(head, 0.4);
    const tx0 = new Map(swarm.peers.map((p) => [p.name, swarm.counters(p.net).tx]));
    const others = start(file, rest);
    await untilProgress(others, 0.2);
    // The peer that has served most since the others started is the parent to kill.
    const served = (p: DaemonHost) => swarm.counters(p.net).tx - (tx0.get(p.name) ?? 0);
    const victim = [...swarm.peers].sort((a, b) => served(b) - served(a))[0] as DaemonHost;
    console.log(`killing parent ${victim.name} after it served ${(served(victim) / 2 ** 20).toFixed(1)} MiB`);
    expect(served(victim)).toBeGreaterThan(1 << 20);
    await swarm.killDaemon(victim);
    const all = [...head, ...others];
    expectAllVerified(file, all, await Promise.all(all.map((r) => r.done)), victim);
    await ensureRunning(victim);
  });

  it("the seed peer killed mid-transfer: every peer still finishes", async () => {
    const file = "seed.bin";
    const running = start(file, swarm.peers);
    await untilProgress(running, 0.2);
    await swarm.killDaemon(swarm.seed);
    expectAllVerified(file, running, await Promise.all(running.map((r) => r.done)));
    await ensureRunning(swarm.seed);
  });

  it("the origin answers 503 for 10 s mid-transfer: every peer still finishes", async () => {
    const file = "origin503.bin";
    const running = start(file, swarm.peers);
    // From the first piece anywhere: the seed peer is then fetching from the origin.
    await untilProgress(running, 1 / SIZE);
    swarm.setOriginFailing(true);
    await sleep(10_000);
    swarm.setOriginFailing(false);
    expectAllVerified(file, running, await Promise.all(running.map((r) => r.done)));
    const failed = swarm.originRequests().filter((q) => q.request.includes(file) && q.status === 503).length;
    console.log(`origin answered ${failed} requests for ${file} with 503`);
    // The fault really hit a transfer.
    expect(failed).toBeGreaterThan(0);
  });

  it("one peer's link drops 30% of its packets: the others finish and verify", async () => {
    const file = "loss.bin";
    const lossy = swarm.peers[swarm.peers.length - 1] as DaemonHost;
    swarm.net.setLoss(lossy.net, 30, "both");
    try {
      // TCP crawls at 30% loss each way: the lossy peer's own download gets a deadline and its
      // outcome is reported, not required; what matters is that nobody else waits on it.
      const lossyDeadlineMs = 30_000 + 2 * M * ((SIZE * 8) / (settings.mbit * 1e6)) * 1000;
      const running = swarm.peers.map((d) => swarm.startDownload(d, swarm.url(file), out(file, d), {}, d === lossy ? lossyDeadlineMs : 900_000));
      const results = await Promise.all(running.map((r) => r.done));
      for (const [i, r] of running.entries()) {
        const res = results[i] as DownloadOutcome;
        if (r.host === lossy) {
          console.log(`lossy peer ${lossy.name}: ${res.ok ? `finished in ${res.ms} ms` : `failed: ${res.error}`}`);
          if (res.ok) expectVerified(file, r.host, res);
        } else expectVerified(file, r.host, res);
      }
    } finally {
      swarm.net.setLoss(lossy.net, 0);
    }
  });

  it("a peer serving corrupted pieces is blocked and every other output verifies", async () => {
    const file = "corrupt.bin";
    const [bad, ...rest] = swarm.peers as [DaemonHost, ...DaemonHost[]];
    const first = await swarm.download(bad, swarm.url(file), out(file, bad));
    expectVerified(file, bad, first);
    // Rot its cached pieces on disk: its piece server sends what is on disk with the digest it
    // recorded when the piece was verified, so receivers must catch the mismatch themselves.
    const data = swarm.taskFiles(bad).find((p) => p.includes(first.taskId) && statSync(p).size >= SIZE);
    expect(data, `task file of ${first.taskId}`).toBeDefined();
    const fd = openSync(data as string, "r+");
    try {
      for (let off = 4096; off < SIZE; off += 1 << 20) writeSync(fd, Buffer.alloc(64, 0xa5), 0, 64, off);
    } finally {
      closeSync(fd);
    }
    const running = start(file, rest);
    expectAllVerified(file, running, await Promise.all(running.map((r) => r.done)));
    const blocks = rest.flatMap((d) => swarm.logLines(d.name).filter((l) => String(l.msg).includes("failed verification") && l.host === bad.net.ip && l.taskId === first.taskId));
    console.log(`${new Set(blocks.map((b) => b.pid)).size} peers blocked ${bad.name} for ${file}`);
    expect(blocks.length).toBeGreaterThan(0);
  });

  // Last: a daemon that is uploading while it re-announces itself to the restarted scheduler
  // currently fails that announce (a fractional txBandwidth does not serialize as uint64), stays
  // unknown to the scheduler and goes back to source alone, which would change later cases.
  it("the scheduler restarted mid-transfer: every peer still finishes", async () => {
    const file = "scheduler.bin";
    const running = start(file, swarm.peers);
    await untilProgress(running, 0.25);
    await swarm.killScheduler("SIGKILL");
    await swarm.startScheduler();
    expectAllVerified(file, running, await Promise.all(running.map((r) => r.done)));
  });
});
