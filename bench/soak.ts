// `npm run soak -- [--downloads N] [--concurrent M] [--json FILE]`: a long run of one resident
// dfdaemon in a real stack (manager, scheduler, seed peer and one peer, each its own process,
// started as `damselfly up` starts them) against an nginx origin, checking that nothing piles
// up: N sequential and then M concurrent downloads of mixed sizes (1 KiB to 64 MiB, new URLs and
// repeated ones, which are cache hits), every output checked against its sha256. The peer's
// RSS, open fds and task directories are sampled after a warm-up and again at the end, once GC
// (a TTL of seconds and a small disk quota, the ordinary gc.* keys) has had its turn.
//
// Gate (exit 1): the peer's RSS grew by more than 10 %, the peer or the seed peer holds more fds
// than at the start (beyond FD_SLACK, see there), or the task directories of either are not
// back to their baseline. A failed or corrupt download exits 1 as well; exit 2 is a broken run.
//
// The downloads go through the daemon's gRPC Download API (DownloadTask with an output path,
// the request dfget sends), one new channel per download as every dfget process opens one; every
// `--cli-every`th sequential download runs the real dfget CLI instead. Not all through the CLI:
// a dfget process spends most of a small download starting Node, and 200 concurrent ones would
// be 200 Node processes (about 12 GB) on a shared 2-core host, measuring process start-up
// rather than the daemon, which sees the same connection and request either way.
import { spawn } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { Command } from "commander";
import { Download, TaskType } from "../src/gen/common/v2/common.js";
import { DfdaemonDownloadClient, type DownloadTaskResponse } from "../src/gen/dfdaemon/v2/dfdaemon.js";
import { cliCommand, startStack, type Stack } from "../src/up/stack.js";
import { startNginx, type Nginx } from "./lib/nginx.js";
import { mulberry32 } from "./lib/prng.js";
import { errorMessage } from "../src/common/errors.js";

const KiB = 1024;
const MiB = 1024 * KiB;
/** Origin files: size and how often it is picked (small files more often, as in real traffic). */
const FILES = [
  { size: 1 * KiB, weight: 3 },
  { size: 4 * KiB + 7, weight: 3 },
  { size: 16 * KiB, weight: 2 },
  { size: 64 * KiB + 1, weight: 2 },
  { size: 256 * KiB, weight: 2 },
  { size: 1 * MiB, weight: 2 },
  { size: 4 * MiB + 3, weight: 2 },
  { size: 16 * MiB, weight: 1 },
  { size: 64 * MiB, weight: 1 },
];
/** Share of downloads that repeat one of the last REPEAT_WINDOW URLs (a cache hit if still held). */
const REPEAT_SHARE = 0.3;
const REPEAT_WINDOW = 16;
// GC as the run configures it: tasks idle for TASK_TTL go, and over 80 % of a 1 GiB quota the
// least recently used go down to 60 %, checked every GC_INTERVAL.
const GC_INTERVAL_S = 2;
const TASK_TTL_S = 20;
const DISK_QUOTA = "1GiB";
const RSS_GROWTH_LIMIT = 0.1;
/** The longest idle timeout of the peer's connection pools (the HTTP backend's keep-alive). */
const POOL_IDLE_S = 60;
/**
 * fds the peer may hold at the end beyond its baseline. 0: what it keeps open for good (its
 * channel to the scheduler, its listeners) was opened before the baseline, and what it pools
 * (keep-alive sockets to the origin, piece connections to the seed peer) closes within
 * POOL_IDLE_S, which the end sample waits for.
 */
const FD_SLACK = 0;

interface Args {
  downloads: number;
  concurrent: number;
  warmup: number;
  cliEvery: number;
  json: string;
  keep: boolean;
}

function parseArgs(argv: string[]): Args {
  const int = (name: string) => (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: "${v}" is not a whole number`);
    return n;
  };
  const o = new Command("soak")
    .option("--downloads <n>", "sequential downloads", int("downloads"), 1000)
    .option("--concurrent <n>", "concurrent downloads after the sequential ones", int("concurrent"), 200)
    .option("--warmup <n>", "unmeasured sequential downloads before the baseline (then one concurrent burst as wide as --concurrent)", int("warmup"), 20)
    .option("--cli-every <n>", "every n-th sequential download runs the dfget CLI (0: never)", int("cli-every"), 100)
    .option("--json <file>", "where to write the result", "bench/results/soak.json")
    .option("--keep", "keep the work directory (stack logs, data dirs)", false)
    .parse(argv, { from: "user" })
    .opts<Args>();
  return o;
}

interface Origin {
  nginx: Nginx;
  files: Array<{ name: string; size: number; sha256: string; weight: number }>;
}

async function startOrigin(dir: string): Promise<Origin> {
  const www = join(dir, "www");
  mkdirSync(www, { recursive: true });
  const files = FILES.map((f, i) => {
    const buf = randomFillSync(Buffer.allocUnsafe(f.size));
    const name = `f${i}-${f.size}.bin`;
    writeFileSync(join(www, name), buf);
    return { name, size: f.size, weight: f.weight, sha256: createHash("sha256").update(buf).digest("hex") };
  });
  return { nginx: await startNginx(dir, www, files[0]?.name ?? ""), files };
}

interface Job {
  url: string;
  size: number;
  sha256: string;
  repeat: boolean;
}

class Picker {
  private readonly rand: () => number;
  private readonly recent: Job[] = [];
  private n = 0;
  private readonly total: number;

  constructor(
    private readonly origin: Origin,
    seed: number,
  ) {
    // Seeded: the same run picks the same sizes and URLs.
    this.rand = mulberry32(seed);
    this.total = origin.files.reduce((s, f) => s + f.weight, 0);
  }

  next(): Job {
    if (this.recent.length > 0 && this.rand() < REPEAT_SHARE) {
      const j = this.recent[Math.floor(this.rand() * this.recent.length)] as Job;
      return { ...j, repeat: true };
    }
    let r = this.rand() * this.total;
    const f = this.origin.files.find((x) => (r -= x.weight) < 0) ?? this.origin.files.at(-1);
    if (!f) throw new Error("no origin files");
    // nginx ignores the query: a new URL, so a new task, with known content.
    const job = { url: `http://127.0.0.1:${this.origin.nginx.port}/${f.name}?soak=${this.n++}`, size: f.size, sha256: f.sha256, repeat: false };
    this.recent.push(job);
    if (this.recent.length > REPEAT_WINDOW) this.recent.shift();
    return job;
  }
}

function sha256File(path: string): Promise<string> {
  return new Promise((res, rej) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("data", (b) => h.update(b))
      .on("error", rej)
      .on("end", () => res(h.digest("hex")));
  });
}

/** DownloadTask as dfget sends it (output path: the daemon writes the file), on a new channel. */
async function grpcDownload(socket: string, url: string, output: string): Promise<void> {
  const client = new DfdaemonDownloadClient(`unix://${socket}`, credentials.createInsecure());
  try {
    await new Promise<void>((res, rej) => {
      const d = Download.fromPartial({ url, type: TaskType.STANDARD, outputPath: output, timeout: { seconds: 600, nanos: 0 }, requestHeader: {}, filteredQueryParams: [] });
      const call = client.downloadTask({ download: d }, new Metadata(), { deadline: Date.now() + 600_000 });
      call.on("data", (_: DownloadTaskResponse) => undefined);
      call.on("error", (e: ServiceError) => rej(new Error(e.details || e.message)));
      call.on("end", () => res());
    });
  } finally {
    client.close();
  }
}

/** The real CLI, as the stack prints it. */
async function cliDownload(socket: string, url: string, output: string): Promise<void> {
  const [node, ...args] = cliCommand("dfget");
  const p = spawn(node === "node" ? process.execPath : (node as string), [...args, url, "-O", output, "-e", socket, "--no-progress"], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  p.stderr?.on("data", (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((r) => p.once("close", r));
  if (code !== 0) throw new Error(`dfget exited ${code}: ${err.trim()}`);
}

interface Tally {
  ok: number;
  failed: Array<{ url: string; error: string }>;
  bytes: number;
  repeats: number;
  viaCli: number;
}

async function downloadOne(socket: string, outDir: string, job: Job, i: number, cli: boolean, t: Tally): Promise<void> {
  const out = join(outDir, `out-${i}`);
  try {
    await (cli ? cliDownload(socket, job.url, out) : grpcDownload(socket, job.url, out));
    const got = await sha256File(out);
    if (got !== job.sha256) throw new Error(`sha256 ${got}, expected ${job.sha256}`);
    t.ok++;
    t.bytes += job.size;
    if (job.repeat) t.repeats++;
    if (cli) t.viaCli++;
  } catch (e) {
    t.failed.push({ url: job.url, error: errorMessage(e) });
  } finally {
    rmSync(out, { force: true });
  }
}

interface ProcSample {
  rssBytes: number;
  /** RssAnon and RssFile of /proc/PID/status: heap and native buffers, or mapped files. */
  rssAnonBytes: number;
  rssFileBytes: number;
  fds: number;
  /**
   * fds by kind, to say what a difference is: TCP connections by the component at the other end
   * (or "in:<own port>" for accepted ones), unix sockets by path, files by path (a task's files
   * by "task files"), and pipes, eventfds and the like by their name.
   */
  fdKinds: Record<string, number>;
}

/** Socket inode -> what it is, from the process's view of /proc/net. */
function socketTable(pid: number, portNames: Map<number, string>): Map<string, string> {
  const table = new Map<string, string>();
  for (const proto of ["tcp", "tcp6"]) {
    let text = "";
    try {
      text = readFileSync(`/proc/${pid}/net/${proto}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const local = parseInt((f[1] ?? "").split(":")[1] ?? "0", 16);
      const remote = parseInt((f[2] ?? "").split(":")[1] ?? "0", 16);
      const state = f[3] === "0A" ? "listen" : f[3] === "01" ? "" : ` state ${f[3]}`;
      const what = state === "listen" ? `tcp listen ${portNames.get(local) ?? local}` : portNames.has(remote) ? `tcp to ${portNames.get(remote)}${state}` : `tcp in:${portNames.get(local) ?? local}${state}`;
      table.set(f[9] ?? "", what);
    }
  }
  try {
    for (const line of readFileSync(`/proc/${pid}/net/unix`, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 7) table.set(f[6] ?? "", `unix ${f[7] ?? "(unnamed)"}`);
    }
  } catch {
    // no unix table: left as "socket"
  }
  return table;
}

function procSample(pid: number, portNames: Map<number, string> = new Map()): ProcSample {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kB = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  const sockets = socketTable(pid, portNames);
  const fdKinds: Record<string, number> = {};
  let fds = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    fds++;
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    const kind = inode ? (sockets.get(inode) ?? "socket") : target.includes("/content/tasks/") ? "task files" : target.replace(/^(pipe|anon_inode:[^\]]*\]?).*$/, "$1");
    fdKinds[kind] = (fdKinds[kind] ?? 0) + 1;
  }
  return { rssBytes: kB("VmRSS"), rssAnonBytes: kB("RssAnon"), rssFileBytes: kB("RssFile"), fds, fdKinds };
}

function taskDirs(daemonDir: string): number {
  const d = join(daemonDir, "content", "tasks");
  return existsSync(d) ? readdirSync(d).length : 0;
}

/** The V8 heap in use of a component, from its own metrics (prom-client's default ones). */
async function heapUsed(metricsPort: number): Promise<number | undefined> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const m = /^nodejs_heap_size_used_bytes\s+(\S+)/m.exec(text);
    return m?.[1] ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

interface DaemonSample extends ProcSample {
  taskDirs: number;
  heapUsedBytes: number | undefined;
}

interface Snapshot {
  at: string;
  peer: DaemonSample;
  seedPeer: DaemonSample;
  scheduler: ProcSample;
  manager: ProcSample;
}

/** Which component listens on each port of the run, to name the ends of TCP connections. */
function portNames(stack: Stack, originPort: number): Map<number, string> {
  const names = new Map<number, string>([[originPort, "origin (nginx)"]]);
  const add = (who: string, ports: object) => {
    for (const [k, v] of Object.entries(ports)) if (typeof v === "number" && v > 0) names.set(v, `${who} ${k}`);
  };
  add("manager", stack.manager.ports);
  add("scheduler", stack.scheduler.ports);
  add("seed-peer", stack.seed.ports);
  for (const p of stack.peers) add(p.name, p.ports);
  return names;
}

async function snapshot(stack: Stack, names: Map<number, string>): Promise<Snapshot> {
  const peer = stack.peers[0];
  if (!peer) throw new Error("the stack has no peer");
  return {
    at: new Date().toISOString(),
    peer: { ...procSample(peer.pid, names), taskDirs: taskDirs(peer.dir), heapUsedBytes: await heapUsed(peer.ports.metrics) },
    seedPeer: { ...procSample(stack.seed.pid, names), taskDirs: taskDirs(stack.seed.dir), heapUsedBytes: await heapUsed(stack.seed.ports.metrics) },
    scheduler: procSample(stack.scheduler.pid, names),
    manager: procSample(stack.manager.pid, names),
  };
}

/**
 * Waits until GC has taken every task TTL allows it to (both daemons' task dirs at `target` or
 * below), then, given `fds`, until the peer and the seed peer hold no more descriptors than that: pooled
 * connections close on their own idle timeouts (the HTTP backend's keep-alive sockets to the
 * origin after 60 s, the native origin pool's after 30 s, piece connections to parents after
 * 30 s), so the wait allows the longest of them and a few GC rounds.
 */
async function settle(stack: Stack, target: { peer: number; seed: number; fds?: { peer: number; seed: number } }, log: (s: string) => void): Promise<number> {
  const t0 = Date.now();
  const peer = stack.peers[0];
  if (!peer) throw new Error("the stack has no peer");
  const dirsBy = t0 + (TASK_TTL_S + 10 * GC_INTERVAL_S) * 1000;
  while (taskDirs(peer.dir) > target.peer || taskDirs(stack.seed.dir) > target.seed) {
    if (Date.now() > dirsBy) {
      log(`GC did not bring the task dirs to ${target.peer}/${target.seed} within ${Math.round((Date.now() - t0) / 1000)} s (peer ${taskDirs(peer.dir)}, seed ${taskDirs(stack.seed.dir)})`);
      break;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  const fdsBy = Date.now() + (POOL_IDLE_S + 3 * GC_INTERVAL_S) * 1000;
  await new Promise((r) => setTimeout(r, 3 * GC_INTERVAL_S * 1000));
  const fds = target.fds;
  // With no target (the baseline) the whole idle timeout: the warm-up's burst leaves a hundred
  // keep-alive sockets to the origin, and a baseline holding them would hide a leak of as many.
  const over = () => !fds || procSample(peer.pid).fds > fds.peer || procSample(stack.seed.pid).fds > fds.seed;
  while (over() && Date.now() < fdsBy) await new Promise((r) => setTimeout(r, 1000));
  return Date.now() - t0;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const log = (s: string) => process.stderr.write(`soak: ${s}\n`);
  // Short: unix socket paths are at most 107 bytes.
  const work = mkdtempSync(join(tmpdir(), "soak-"));
  const origin = await startOrigin(work);
  let stack: Stack | undefined;
  try {
    log(`starting the stack in ${work}`);
    stack = await startStack({
      dataDir: join(work, "stack"),
      peers: 1,
      preferDefaultPorts: false,
      onProgress: log,
      daemonConfig: { gc: { interval: `${GC_INTERVAL_S}s`, policy: { taskTTL: `${TASK_TTL_S}s`, diskThreshold: DISK_QUOTA, diskHighThresholdPercent: 80, diskLowThresholdPercent: 60 } } },
    });
    const running = stack;
    const names = portNames(running, origin.nginx.port);
    let crashed: string | undefined;
    void running.exited.then((e) => (crashed = `${e.name} exited (${e.signal ?? `code ${e.code}`})`));
    const peer = running.peers[0];
    if (!peer) throw new Error("the stack has no peer");
    const outDir = join(work, "out");
    mkdirSync(outDir, { recursive: true });
    const picker = new Picker(origin, 20);
    let seq = 0;

    // Warm-up: the one-time costs (JIT, channels to the scheduler and the seed peer, piece
    // connections) go before the baseline, and so does one burst as wide as the measured one:
    // what it leaves is the high-water mark of bounded pools (the native piece-buffer pool keeps
    // up to 256 MiB of aligned buffers for reuse; malloc keeps its arenas), reached by the
    // first burst of a run, not growth. Without it the peer's RSS went 182 -> 217 MiB, all of
    // it during the concurrent burst and none after.
    const warm: Tally = { ok: 0, failed: [], bytes: 0, repeats: 0, viaCli: 0 };
    for (let i = 0; i < args.warmup; i++) await downloadOne(peer.socketPath, outDir, picker.next(), seq++, i === 0 && args.cliEvery > 0, warm);
    await Promise.all(Array.from({ length: Math.max(args.warmup, args.concurrent) }, () => downloadOne(peer.socketPath, outDir, picker.next(), seq++, false, warm)));
    if (warm.failed.length > 0) throw new Error(`warm-up downloads failed: ${JSON.stringify(warm.failed.slice(0, 5))}`);
    log(`warm-up: ${warm.ok} downloads; waiting for GC`);
    await settle(running, { peer: 0, seed: 0 }, log);
    const start = await snapshot(running, names);
    log(`baseline: peer rss ${(start.peer.rssBytes / MiB).toFixed(1)} MiB, fds ${start.peer.fds}, task dirs ${start.peer.taskDirs}`);

    const t0 = Date.now();
    const seqTally: Tally = { ok: 0, failed: [], bytes: 0, repeats: 0, viaCli: 0 };
    for (let i = 0; i < args.downloads && !crashed; i++) {
      await downloadOne(peer.socketPath, outDir, picker.next(), seq++, args.cliEvery > 0 && (i + 1) % args.cliEvery === 0, seqTally);
      if ((i + 1) % 100 === 0) {
        const [p, sp] = [procSample(peer.pid), procSample(running.seed.pid)];
        log(`sequential ${i + 1}/${args.downloads}: ${seqTally.failed.length} failed; peer rss ${(p.rssBytes / MiB).toFixed(1)} MiB, fds ${p.fds}, task dirs ${taskDirs(peer.dir)}; seed peer rss ${(sp.rssBytes / MiB).toFixed(1)} MiB (anon ${(sp.rssAnonBytes / MiB).toFixed(1)}), heap ${((await heapUsed(running.seed.ports.metrics)) ?? 0) / MiB | 0} MiB`);
      }
    }
    const seqSeconds = (Date.now() - t0) / 1000;
    const t1 = Date.now();
    const concTally: Tally = { ok: 0, failed: [], bytes: 0, repeats: 0, viaCli: 0 };
    const jobs = Array.from({ length: args.concurrent }, () => picker.next());
    await Promise.all(jobs.map((j) => downloadOne(peer.socketPath, outDir, j, seq++, false, concTally)));
    const concSeconds = (Date.now() - t1) / 1000;
    const peak = await snapshot(running, names);
    log(`concurrent ${args.concurrent}: ${concTally.failed.length} failed in ${concSeconds.toFixed(1)} s; waiting for GC`);
    const settleMs = await settle(running, { peer: start.peer.taskDirs, seed: start.seedPeer.taskDirs, fds: { peer: start.peer.fds + FD_SLACK, seed: start.seedPeer.fds + FD_SLACK } }, log);
    const end = await snapshot(running, names);
    const wallSeconds = (Date.now() - t0) / 1000;

    const growth = (a: number, b: number) => (a > 0 ? (b - a) / a : 0);
    const checks = {
      downloadsSucceeded: seqTally.failed.length === 0 && concTally.failed.length === 0 && !crashed,
      peerRssGrowthWithinLimit: growth(start.peer.rssBytes, end.peer.rssBytes) <= RSS_GROWTH_LIMIT,
      peerFdsBackToBaseline: end.peer.fds <= start.peer.fds + FD_SLACK,
      seedPeerFdsBackToBaseline: end.seedPeer.fds <= start.seedPeer.fds + FD_SLACK,
      peerTaskDirsBackToBaseline: end.peer.taskDirs <= start.peer.taskDirs,
      seedPeerTaskDirsBackToBaseline: end.seedPeer.taskDirs <= start.seedPeer.taskDirs,
    };
    const pass = Object.values(checks).every(Boolean);
    const result = {
      name: "soak",
      command: `npm run soak -- ${process.argv.slice(2).join(" ")}`.trim(),
      pass,
      checks,
      limits: { rssGrowth: RSS_GROWTH_LIMIT, fdSlack: FD_SLACK },
      config: { gcInterval: `${GC_INTERVAL_S}s`, taskTTL: `${TASK_TTL_S}s`, diskThreshold: DISK_QUOTA, repeatShare: REPEAT_SHARE, files: origin.files.map((f) => ({ size: f.size, weight: f.weight })) },
      downloads: {
        warmup: warm.ok,
        sequential: { requested: args.downloads, ok: seqTally.ok, failed: seqTally.failed.length, repeatedUrls: seqTally.repeats, viaDfgetCli: seqTally.viaCli, bytes: seqTally.bytes, seconds: seqSeconds },
        concurrent: { requested: args.concurrent, ok: concTally.ok, failed: concTally.failed.length, repeatedUrls: concTally.repeats, bytes: concTally.bytes, seconds: concSeconds },
        failures: [...seqTally.failed, ...concTally.failed].slice(0, 20),
      },
      crashed,
      wallSeconds,
      settleSeconds: settleMs / 1000,
      rssGrowth: {
        peer: growth(start.peer.rssBytes, end.peer.rssBytes),
        seedPeer: growth(start.seedPeer.rssBytes, end.seedPeer.rssBytes),
        scheduler: growth(start.scheduler.rssBytes, end.scheduler.rssBytes),
        manager: growth(start.manager.rssBytes, end.manager.rssBytes),
      },
      start,
      afterConcurrent: peak,
      end,
    };
    const json = resolve(args.json);
    mkdirSync(dirname(json), { recursive: true });
    writeFileSync(json, `${JSON.stringify(result, null, 2)}\n`);
    const mb = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
    log(`peer rss ${mb(start.peer.rssBytes)} -> ${mb(end.peer.rssBytes)}, fds ${start.peer.fds} -> ${end.peer.fds}, task dirs ${start.peer.taskDirs} -> ${end.peer.taskDirs}`);
    log(`seed peer rss ${mb(start.seedPeer.rssBytes)} -> ${mb(end.seedPeer.rssBytes)}, fds ${start.seedPeer.fds} -> ${end.seedPeer.fds}, task dirs ${start.seedPeer.taskDirs} -> ${end.seedPeer.taskDirs}; scheduler rss ${mb(start.scheduler.rssBytes)} -> ${mb(end.scheduler.rssBytes)}`);
    log(`${seqTally.ok + concTally.ok} downloads ok, ${seqTally.failed.length + concTally.failed.length} failed, ${wallSeconds.toFixed(0)} s; ${pass ? "PASS" : `FAIL: ${Object.keys(checks).filter((k) => !checks[k as keyof typeof checks]).join(", ")}`}; ${json}`);
    return pass ? 0 : 1;
  } finally {
    await stack?.close();
    origin.nginx.stop();
    if (args.keep) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`soak: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(2);
  },
);
