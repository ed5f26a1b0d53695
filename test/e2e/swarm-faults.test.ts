// Scenario 3: faults during transfers. Each fault gets a file (so a task) of its own on one
// swarm: a parent peer killed, a parent peer stopped (SIGSTOP), the seed peer killed, the
// scheduler restarted, the origin answering 503 for 10 s, a peer whose link drops 30% of its
// packets, a peer that serves corrupted pieces, and a peer that lies (serves other bytes with
// their own CRC). Every other download completes and verifies; the corrupt and the lying peers
// are blocked, the stopped one costs the others seconds.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { digest, isNativeError, openTaskStore } from "../../src/native/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settings, skipReason, support } from "./harness/settings.js";
import { sha256File, Swarm, type DaemonHost, type DownloadOutcome, type RunningDownload } from "./harness/swarm.js";

const SIZE = settings.sizeMiB << 20;
const M = settings.faultPeers;
// The seed peer asks the origin for 8 pieces at a time: the 503 file has more pieces than that
// (at least 96 MiB, 24 pieces), so requests are still to come when the origin starts failing.
const SIZE_503 = Math.max(SIZE, 96 << 20);
const FILES = ["parent", "stop-base", "stop", "seed", "scheduler", "loss", "corrupt", "liar"].map((n) => ({ name: `${n}.bin`, size: SIZE })).concat({ name: "origin503.bin", size: SIZE_503 });

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

  it("a parent peer stopped (SIGSTOP) mid-transfer: the others finish without waiting out the piece timeout", async () => {
    // Without the fault first, the same size on the same swarm: the time to beat.
    const base = start("stop-base.bin", swarm.peers);
    const baseResults = await Promise.all(base.map((r) => r.done));
    expectAllVerified("stop-base.bin", base, baseResults);
    const baseMs = Math.max(...baseResults.map((r) => r.ms));

    const file = "stop.bin";
    const running = start(file, swarm.peers);
    await untilProgress(running, 0.2);
    // The parent to stop is one caught sending (its link busy for the last 50 ms), so that a
    // child is mid-piece from it, the case that used to wait out the piece timeout.
    let victim: DaemonHost | undefined;
    let tx = new Map(swarm.peers.map((p) => [p.name, swarm.counters(p.net).tx]));
    for (let i = 0; i < 200 && !victim; i++) {
      await sleep(50);
      const now = new Map(swarm.peers.map((p) => [p.name, swarm.counters(p.net).tx]));
      victim = swarm.peers.find((p) => (now.get(p.name) ?? 0) - (tx.get(p.name) ?? 0) > 128 << 10);
      tx = now;
    }
    if (!victim) throw new Error("no peer was caught uploading");
    console.log(`stopping parent ${victim.name} while it uploads`);
    victim.proc?.child.kill("SIGSTOP");
    try {
      const others = running.filter((r) => r.host !== victim);
      const results = await Promise.all(others.map((r) => r.done));
      expectAllVerified(file, others, results);
      const faultMs = Math.max(...results.map((r) => r.ms));
      const lines = others.flatMap((r) => swarm.logLines(r.host.name).filter((l) => l.host === victim.net.ip));
      const stalls = lines.filter((l) => l.msg === "parent stalled").length;
      const drops = lines.filter((l) => String(l.msg).includes("stalled twice")).length;
      console.log(`SIGSTOP: last peer after ${faultMs} ms, without the fault ${baseMs} ms (${(faultMs / baseMs).toFixed(2)}x; the issue's target is 1.5x at 16 peers, 128 MiB); ${stalls} stalls on ${victim.name} noticed, ${drops} peers dropped it`);
      // A child that was receiving from the stopped parent notices within the idle deadline
      // (4 piece times, at least 2 s), where it used to wait out download.pieceTimeout (30 s
      // here). What is left is fixed cost: a child whose only peer holding a piece is the
      // stopped one waits out the first-byte deadline once (16 piece times, about 6 s here),
      // and a fresh piece the seed peer offered to the stopped peer alone (super-seeding,
      // seedPeer.spreadHold 10 s) reaches the others when the hold ends, as the stopped peer's
      // SyncPieces stream stays open. At small sizes that cost dominates, so the bound is the
      // larger of 1.5x and the no-fault time plus 15 s (the piece timeout would add 30 s).
      expect(faultMs).toBeLessThanOrEqual(Math.max(1.5 * baseMs, baseMs + 15_000));
    } finally {
      victim.proc?.child.kill("SIGCONT");
    }
    const own = (await running.find((r) => r.host === victim)?.done) as DownloadOutcome;
    console.log(`stopped peer ${victim.name} after SIGCONT: ${own.ok ? `finished in ${own.ms} ms` : `failed: ${own.error}`}`);
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

  it("a peer lying with matching CRCs is caught by the origin's digests, blocked, and every other output verifies", async () => {
    const file = "liar.bin";
    const [liar, ...rest] = swarm.peers as [DaemonHost, ...DaemonHost[]];
    const first = await swarm.download(liar, swarm.url(file), out(file, liar));
    expectVerified(file, liar, first);
    // Killed (not stopped: a clean shutdown would leave the scheduler, which would then never
    // offer it), its pieces rewritten with other bytes and recorded with their own CRC, and
    // started again: its piece server then sends the lie with a CRC that matches it.
    await swarm.killDaemon(liar);
    const content = swarm.taskFiles(liar).find((p) => p.includes(first.taskId) && statSync(p).size >= SIZE);
    expect(content, `task file of ${first.taskId}`).toBeDefined();
    const dir = dirname(content as string);
    const meta = JSON.parse(readFileSync(join(dir, "task.json"), "utf8")) as { contentLength: number; pieceLength: number };
    const store = openTaskStore({ dataDir: dirname(dir), taskId: basename(dir), contentLength: meta.contentLength, pieceLength: meta.pieceLength });
    const lies = store.finishedPieces();
    expect(lies.length).toBeGreaterThan(0);
    for (const p of lies) {
      const lie = Buffer.from(await store.readPiece(p.number));
      lie.write("made-up bytes", 4096);
      const fd = openSync(content as string, "r+");
      try {
        writeSync(fd, lie, 0, lie.length, p.offset);
      } finally {
        closeSync(fd);
      }
      await expect(store.verifyPiece(p.number)).rejects.toSatisfy((e: unknown) => isNativeError(e) && e.code === "DF_DIGEST_MISMATCH");
      expect((await store.writePiece(p.number, lie)).digest).toBe(digest("crc32", lie));
    }
    await swarm.startDaemon(liar);
    const running = start(file, rest);
    expectAllVerified(file, running, await Promise.all(running.map((r) => r.done)));
    const blocks = rest.flatMap((d) => swarm.logLines(d.name).filter((l) => String(l.msg).includes("failed verification") && l.host === liar.net.ip && l.taskId === first.taskId));
    console.log(`${new Set(blocks.map((b) => b.pid)).size} peers blocked ${liar.name} for ${file}`);
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
