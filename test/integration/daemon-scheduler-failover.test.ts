// Many schedulers (issue 26): three scheduler processes, a seed peer and eight peers share a
// 256 MiB file. The scheduler that owns the task is killed (SIGKILL) mid-download: every peer
// moves the task to the next scheduler on its ring, keeping the pieces it holds, and every
// download completes and verifies with the origin serving about one copy (P2P, not eight
// peers at the origin). Restarted, the killed scheduler rejoins the daemons' rings: a new task
// that hashes to it is scheduled there. Killed again after that task is done, the next
// scheduler learns it from the seed peer, which holds it whole: no second trip to the origin.
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { credentials, Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HashRing } from "../../src/common/hashring.js";
import { checkServing } from "../../src/common/grpc/health.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { taskIdOf } from "../../src/daemon/task/task-id.js";
import { Download, TaskType, type Task as TaskMessage } from "../../src/gen/common/v2/common.js";
import { SchedulerClient } from "../../src/gen/scheduler/v2/scheduler.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const SIZE = 256 * 1024 * 1024;
const PEERS = 8;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A scheduler in a process of its own (bin/damselfly.js on dist/), so it can be SIGKILLed. */
class SchedulerProcess {
  proc: ChildProcess | undefined;
  constructor(
    readonly port: number,
    private readonly config: string,
  ) {}

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const bin = new URL("../../bin/damselfly.js", import.meta.url).pathname;
    this.proc = spawn(process.execPath, [bin, "scheduler", "--config", this.config, "--port", String(this.port)], { stdio: ["ignore", "ignore", "inherit"] });
    await until(() => checkServing(this.addr, credentials.createInsecure(), 1000), `scheduler ${this.addr} to serve`, 30_000);
  }

  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((resolve) => p.once("exit", resolve));
    p.kill("SIGKILL");
    await exited;
  }
}

/** A scheduler's record of a task (StatTask), or undefined when it does not know it. */
function statTask(addr: string, taskId: string): Promise<TaskMessage | undefined> {
  const client = new SchedulerClient(addr, credentials.createInsecure());
  return new Promise((resolve) => {
    client.statTask({ hostId: "", taskId }, new Metadata(), { deadline: Date.now() + 5000 }, (err, task) => {
      client.close();
      resolve(err ? undefined : task);
    });
  });
}

describe("daemons fail over between schedulers", () => {
  let origin: Origin;
  const schedulers: SchedulerProcess[] = [];
  const daemons: DaemonHandle[] = [];
  let seed: DaemonHandle;
  const peers: DaemonHandle[] = [];
  /** A peer without health checks (nor announcements during the test): only a failed conversation tells it the scheduler is gone. */
  let late: DaemonHandle;
  const out = tempDir("failover-out");
  let owner: SchedulerProcess;
  /** The task of the rejoin test, held whole by the seed peer after it. */
  let rejoinUrl = "";

  beforeAll(async () => {
    origin = await startOrigin(makeContent(SIZE, 26));
    const dir = tempDir("schedulers");
    const config = join(dir, "scheduler.yaml");
    // Short retries so a peer waiting for parents on the new scheduler is re-tried quickly.
    writeFileSync(config, ["server:", "  listenIP: 127.0.0.1", "  advertiseIP: 127.0.0.1", "  logLevel: error", "metrics:", "  enable: false", "scheduler:", "  retryInterval: 200ms", ""].join("\n"));
    for (let i = 0; i < 3; i++) schedulers.push(new SchedulerProcess(await freePort(), config));
    await Promise.all(schedulers.map((s) => s.start()));
    const addrs = schedulers.map((s) => s.addr);
    const scheduler = { addrs, announceInterval: "30s", healthCheckInterval: "500ms" };
    seed = await startTestDaemon({ name: "seed", schedulers: addrs, seed: true, overrides: { scheduler } });
    daemons.push(seed);
    for (let i = 0; i < PEERS; i++) peers.push(await startTestDaemon({ name: `peer-${i}`, schedulers: addrs, overrides: { scheduler } }));
    daemons.push(...peers);
    late = await startTestDaemon({ name: "late", schedulers: addrs, overrides: { scheduler: { ...scheduler, healthCheckInterval: "0s", announceInterval: "5m" } } });
    daemons.push(late);
    const taskId = taskIdOf(Download.fromPartial({ type: TaskType.STANDARD, url: origin.url() }));
    const ownerAddr = new HashRing(addrs).get(taskId.slice(0, 5));
    owner = schedulers.find((s) => s.addr === ownerAddr) as SchedulerProcess;
  }, 120_000);

  afterAll(async () => {
    for (const d of daemons) await d.close();
    for (const s of schedulers) await s.kill();
    await origin?.close();
    cleanupTempDirs();
  });

  it("completes every download through P2P when the task's scheduler is killed mid-download", async () => {
    // Slow origin answers keep the seed peer fetching long enough to kill the scheduler while
    // it and every peer are mid-way.
    origin.delayMs = 300;
    const taskId = taskIdOf(Download.fromPartial({ type: TaskType.STANDARD, url: origin.url() }));
    const seedHeld = () => seed.storage.get(taskId)?.finishedCount() ?? 0;
    let pieces = 0;
    let finished = 0;
    let killing: Promise<void> | undefined;
    let atKill: { pieces: number; finished: number; seedHeld: number } | undefined;
    const downloads = peers.map((p, i) =>
      downloadVia(p.socketPath, { url: origin.url(), outputPath: join(out, `out-${i}`) }, () => {
        // Once the peers got their first pieces, the owner goes.
        if (++pieces >= PEERS && !killing) {
          atKill = { pieces, finished, seedHeld: seedHeld() };
          killing = owner.kill();
        }
      }).finally(() => finished++),
    );
    const results = await Promise.all(downloads);
    await killing;
    origin.delayMs = 0;

    expect(atKill, "the scheduler was killed").toBeDefined();
    expect(atKill?.finished, "no download had finished when the scheduler was killed").toBe(0);
    expect(atKill?.seedHeld, "the seed peer was mid-way when the scheduler was killed").toBeLessThan(SIZE / (4 << 20));
    for (const [i, r] of results.entries()) {
      expect(r.contentLength).toBe(SIZE);
      expect(sha256File(join(out, `out-${i}`)), `out-${i}`).toBe(origin.sha256);
    }
    // About one copy from the origin: the peers got the rest from each other and the seed.
    expect(origin.bytesServed).toBeLessThanOrEqual(1.1 * SIZE);
    // Every daemon took the killed scheduler off its ring; the task lives on the next one,
    // where the seed peer moved its download.
    for (const d of [seed, ...peers]) expect(d.schedulers.isDown(owner.addr)).toBe(true);
    const next = seed.schedulers.forTask(taskId)?.addr as string;
    expect(next).not.toBe(owner.addr);
    expect((await statTask(next, taskId))?.hasAvailablePeer).toBe(true);

    // A peer that still has the dead scheduler on its ring: registering there fails, the
    // download moves to the next scheduler and is served by the swarm there.
    expect(late.schedulers.isDown(owner.addr)).toBe(false);
    expect(late.schedulers.forTask(taskId)?.addr).toBe(owner.addr);
    const r = await downloadVia(late.socketPath, { url: origin.url(), outputPath: join(out, "late") });
    expect(r.taskId).toBe(taskId);
    expect(sha256File(join(out, "late"))).toBe(origin.sha256);
    expect(late.schedulers.isDown(owner.addr)).toBe(true);
    expect(origin.bytesServed).toBeLessThanOrEqual(1.1 * SIZE);
    expect((await statTask(next, taskId))?.peerCount).toBeGreaterThanOrEqual(2);
  }, 300_000);

  it("brings the restarted scheduler back into every ring: a new task hashing to it goes there", async () => {
    await owner.start();
    // (`late` checks no health: it learns the scheduler is back only at its next failure.)
    await until(() => [seed, ...peers].every((d) => !d.schedulers.isDown(owner.addr)), "every daemon to put the restarted scheduler back on its ring", 30_000);
    // A task of its own that hashes to the restarted scheduler.
    const addrs = schedulers.map((s) => s.addr);
    const ring = new HashRing(addrs);
    let url = "";
    for (let v = 0; ; v++) {
      url = origin.url(`/file.bin?rejoin=${v}`);
      if (ring.get(taskIdOf(Download.fromPartial({ type: TaskType.STANDARD, url })).slice(0, 5)) === owner.addr) break;
    }
    const r = await downloadVia(peers[0]!.socketPath, { url, outputPath: join(out, "rejoin") });
    expect(sha256File(join(out, "rejoin"))).toBe(origin.sha256);
    expect(await statTask(owner.addr, r.taskId)).toBeDefined();
    for (const s of schedulers.filter((x) => x !== owner)) expect(await statTask(s.addr, r.taskId)).toBeUndefined();
    rejoinUrl = url;
  }, 120_000);

  it("has the next scheduler learn a task the seed peer holds whole when its scheduler is killed after the download", async () => {
    // The seed peer holds the last test's task whole; its scheduler goes, and a peer that
    // does not hold it asks the next one, which knows nothing of it and triggers the seed.
    const taskId = taskIdOf(Download.fromPartial({ type: TaskType.STANDARD, url: rejoinUrl }));
    expect(seed.storage.get(taskId)?.meta.state).toBe("succeeded");
    await owner.kill();
    const before = origin.bytesServed;
    const r = await downloadVia(peers[1]!.socketPath, { url: rejoinUrl, outputPath: join(out, "held") });
    expect(r.taskId).toBe(taskId);
    expect(sha256File(join(out, "held"))).toBe(origin.sha256);
    // From the seed peer's store, not the origin (which answered the peer's stat only).
    expect(origin.bytesServed - before).toBeLessThan(SIZE / 64);
    const next = peers[1]!.schedulers.forTask(taskId)?.addr as string;
    expect(next).not.toBe(owner.addr);
    expect((await statTask(next, taskId))?.hasAvailablePeer).toBe(true);
  }, 120_000);
});
