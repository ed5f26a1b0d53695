// The product path a user times: `dfget URL -O file` through a resident dfdaemon, against
// `curl -o` of the same file from the same nginx to the same disk, in the same run, until the
// bytes are on the disk: the daemon's store writes with O_DIRECT, so when dfget returns the file
// is durable, and curl's copy is too only after an fdatasync. Without it the comparison is one
// of the disk against the page cache: on a host whose disk took 1 GiB of direct writes in
// 2.4 s (450 MB/s, dd oflag=direct) the ratio was 0.71 with either this session's code or the
// code that measured 1.37 on a faster disk. The ratio against plain `curl -o` (the old
// baseline) stays in the details as ratioWithoutSync.
//   dfget-back-to-source-1g: a fresh task each round (the daemon goes to the origin).
//   dfget-p2p-cached-1g:     a second peer pulls the task another peer already holds.
//   dfget-p2p-mtls-1g:       the same with mTLS everywhere, against it in plaintext (issue 21).
//   dfget-p2p-encrypted-1g:  the same with pieces sealed at rest on both peers, against plaintext
//                            stores (issue 21).
// Peak RSS of each daemon (VmHWM) is reported in the details.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../src/common/logger.js";
import { startScheduler } from "../src/scheduler/server.js";
import { taskIdFromUrl } from "../src/common/ids.js";
import { durationResult, median } from "./lib/measure.js";
import { curlSeconds, startNginx, type Nginx } from "./lib/nginx.js";
import type { BenchContext, BenchResult, BenchSuite } from "./lib/types.js";
import { deleteTask, dfgetSeconds, startDaemonProcess, type Daemon, type DaemonExtras } from "./lib/dfdaemon.js";
import { writeContent } from "./lib/content.js";
import type { TlsFiles } from "../src/common/grpc/tls.js";
import { stackCertificates } from "../src/up/pki.js";
import { startManager } from "../src/manager/server.js";

const MiB = 1024 * 1024;

/** The content every bench here downloads (file.bin, 1 GiB; warm.bin, 16 MiB) behind nginx, and its rounds. */
async function serveContent(ctx: BenchContext): Promise<{ size: number; rounds: number; nginx: Nginx }> {
  // 1 GiB even in short (CI) mode: at 256 MiB a dfget process's own start (~0.1 s of module
  // loading) is a third of the run and the gate would measure Node start-up, not the transfer.
  const size = 1024 * MiB;
  // Five rounds even in short mode: curl's own rounds spread 1.2-1.6 s here, and with three the
  // median was one of two warm rounds (round 0 reads the parent's pieces from disk).
  const rounds = ctx.short ? 5 : 7;
  const www = join(ctx.workDir, "www");
  mkdirSync(www, { recursive: true });
  if (!existsSync(join(www, "file.bin"))) writeContent(join(www, "file.bin"), size);
  if (!existsSync(join(www, "warm.bin"))) writeContent(join(www, "warm.bin"), 16 * MiB);
  return { size, rounds, nginx: await startNginx(ctx.workDir, www, "file.bin") };
}

async function measure(ctx: BenchContext, p2p: boolean): Promise<BenchResult> {
  const { size, rounds, nginx } = await serveContent(ctx);
  const scheduler = p2p ? await startScheduler({ server: { listenIP: "127.0.0.1", port: 0, logLevel: "silent" }, metrics: { enable: false }, seedPeer: { enable: false } }, { logger: silentLogger() }) : undefined;
  const schedulers = scheduler ? [`127.0.0.1:${scheduler.grpcPort}`] : [];
  const daemons: Daemon[] = [];
  try {
    const a = await startDaemonProcess(join(ctx.workDir, p2p ? "p2p-a" : "bts-a"), p2p ? "bench-a" : "bench-bts", schedulers);
    daemons.push(a);
    const b = p2p ? await startDaemonProcess(join(ctx.workDir, "p2p-b"), "bench-b", schedulers) : undefined;
    if (b) daemons.push(b);
    const base = `http://127.0.0.1:${nginx.port}/file.bin`;
    // A resident daemon is measured, not a fresh one: one unmeasured small download first
    // (through P2P for the child) takes the one-time costs — JIT, first gRPC channels to the
    // scheduler and the parent, first piece connections — out of the rounds. What stays in
    // round 0 of the P2P bench is real: the parent wrote the task with O_DIRECT, so its first
    // serve reads it from disk; later rounds find it in the page cache (the median shows those).
    const warm = `http://127.0.0.1:${nginx.port}/warm.bin`;
    await dfgetSeconds(a.socket, warm, join(ctx.workDir, "warm"));
    rmSync(join(ctx.workDir, "warm"), { force: true });
    if (b) {
      await dfgetSeconds(b.socket, warm, join(ctx.workDir, "warm"));
      rmSync(join(ctx.workDir, "warm"), { force: true });
      await dfgetSeconds(a.socket, base, join(ctx.workDir, "warm")); // peer A holds the task
      rmSync(join(ctx.workDir, "warm"), { force: true });
    }
    const ours: number[] = [];
    const curl: number[] = [];
    const curlNoSync: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const out = join(ctx.workDir, `out-${i}`);
      // back-to-source: a new URL (nginx ignores the query) is a new task every round.
      const url = b ? base : `${base}?round=${i}`;
      const runOurs = async () => {
        ours.push(await dfgetSeconds(b ? b.socket : a.socket, url, out));
        rmSync(out, { force: true });
        await deleteTask(b ? b.socket : a.socket, taskIdFromUrl({ url }));
      };
      const runCurl = () => {
        curlNoSync.push(curlSeconds(base, out));
        rmSync(out, { force: true });
        curl.push(curlSeconds(base, out, true));
        rmSync(out, { force: true });
      };
      if (i % 2 === 0) {
        await runOurs();
        runCurl();
      } else {
        runCurl();
        await runOurs();
      }
      ctx.log(`round ${i}: dfget ${ours[ours.length - 1]?.toFixed(2)}s, curl+fdatasync ${curl[curl.length - 1]?.toFixed(2)}s, curl ${curlNoSync[curlNoSync.length - 1]?.toFixed(2)}s`);
    }
    const name = p2p ? "dfget-p2p-cached-1g" : "dfget-back-to-source-1g";
    return durationResult(name, "s", median(ours), median(curl), "curl -o from nginx, then fdatasync", {
      sizeBytes: size,
      rounds,
      oursRounds: ours,
      baselineRounds: curl,
      curlWithoutSyncRounds: curlNoSync,
      ratioWithoutSync: median(curlNoSync) / median(ours),
      peakRssBytes: Object.fromEntries(daemons.map((d, i) => [i === 0 ? (p2p ? "parent" : "daemon") : "child", d.peakRssBytes()])),
    });
  } finally {
    for (const d of daemons) d.stop();
    await scheduler?.close();
    nginx.stop();
  }
}

type Pair = { a: Daemon; b: Daemon };

/**
 * Two parent/child pairs on their own schedulers, measured in the same run: one-time costs
 * taken out first as in measure() and each parent made to hold the task, then each round
 * times both children's P2P download of it, in alternating order. Times in seconds per round.
 */
async function pairRounds(ctx: BenchContext, nginx: Nginx, rounds: number, pairs: { ours: Pair; baseline: Pair }, label: { ours: string; baseline: string }): Promise<{ ours: number[]; baseline: number[] }> {
  const base = `http://127.0.0.1:${nginx.port}/file.bin`;
  const warm = `http://127.0.0.1:${nginx.port}/warm.bin`;
  for (const { a, b } of Object.values(pairs)) {
    for (const [d, url] of [[a, warm], [b, warm], [a, base]] as const) {
      await dfgetSeconds(d.socket, url, join(ctx.workDir, "warm"));
      rmSync(join(ctx.workDir, "warm"), { force: true });
    }
  }
  const times = { ours: [] as number[], baseline: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? (["ours", "baseline"] as const) : (["baseline", "ours"] as const);
    for (const k of order) {
      const out = join(ctx.workDir, `pair-out-${k}-${i}`);
      times[k].push(await dfgetSeconds(pairs[k].b.socket, base, out));
      rmSync(out, { force: true });
      await deleteTask(pairs[k].b.socket, taskIdFromUrl({ url: base }));
    }
    ctx.log(`round ${i}: ${label.ours} ${times.ours.at(-1)?.toFixed(2)}s, ${label.baseline} ${times.baseline.at(-1)?.toFixed(2)}s`);
  }
  return times;
}

/**
 * dfget-p2p-mtls-1g (issue 21): the P2P download of dfget-p2p-cached-1g with mTLS on everywhere
 * (scheduler gRPC, upload gRPC, vortex piece connections, one cluster CA), against the same
 * download in plaintext, in the same run: two schedulers and two parent/child pairs, rounds
 * alternating between them. The ratio is plaintext time / mTLS time (≥ 1: TLS costs nothing).
 */
async function measureMtls(ctx: BenchContext): Promise<BenchResult> {
  const { size, rounds, nginx } = await serveContent(ctx);
  const certs = await stackCertificates(join(ctx.workDir, "pki"), [
    { name: "scheduler", role: "scheduler" },
    // Named as the daemons announce themselves: under mTLS the scheduler takes a host only
    // from a certificate that names it.
    { name: "bench-tls-a", role: "peer" },
    { name: "bench-tls-b", role: "peer" },
  ]);
  const schedulerConfig = (tls?: TlsFiles) => ({ server: { listenIP: "127.0.0.1", port: 0, logLevel: "silent", ...(tls ? { tls } : {}) }, metrics: { enable: false }, seedPeer: { enable: false } });
  const plainScheduler = await startScheduler(schedulerConfig(), { logger: silentLogger() });
  const tlsScheduler = await startScheduler(schedulerConfig(certs.get("scheduler")), { logger: silentLogger() });
  const daemons: Daemon[] = [];
  const start = async (name: string, scheduler: { grpcPort: number }, tls?: TlsFiles) => {
    const d = await startDaemonProcess(join(ctx.workDir, `mtls-${name}`), `bench-${name}`, [`127.0.0.1:${scheduler.grpcPort}`], { tls });
    daemons.push(d);
    return d;
  };
  try {
    const pairs = {
      baseline: { a: await start("plain-a", plainScheduler), b: await start("plain-b", plainScheduler) },
      ours: { a: await start("tls-a", tlsScheduler, certs.get("bench-tls-a")), b: await start("tls-b", tlsScheduler, certs.get("bench-tls-b")) },
    };
    const times = await pairRounds(ctx, nginx, rounds, pairs, { ours: "mTLS", baseline: "plaintext" });
    return durationResult("dfget-p2p-mtls-1g", "s", median(times.ours), median(times.baseline), "the same P2P download in plaintext (dfget-p2p-cached-1g's setup)", {
      sizeBytes: size,
      rounds,
      oursRounds: times.ours,
      baselineRounds: times.baseline,
    });
  } finally {
    for (const d of daemons) d.stop();
    await plainScheduler.close();
    await tlsScheduler.close();
    nginx.stop();
  }
}

/**
 * dfget-p2p-encrypted-1g (issue 21): the P2P download of dfget-p2p-cached-1g with pieces
 * sealed at rest (AES-256-GCM) on both peers, under the default tenant's key from a manager
 * over mTLS: the parent opens every piece it serves, the child seals every piece it stores and
 * opens them again to write its output (mode 0600). Against the same download with plaintext
 * stores (hard-linked output), same run, rounds alternating between the two pairs. The wire is
 * plaintext for both, so this is the cost of the at-rest encryption alone (mTLS has its own
 * bench). Ratio = plaintext time / sealed time. Measured 2026-12-07 on this 2-core host: 0.743
 * on a quiet host (sealed 4.09 s, plaintext 3.04 s; the same with the output's page-cache copy
 * moved off the pieces' path), 0.62-0.81 with other sessions' load. The sealed child writes
 * 2 GiB where the plaintext one writes 1 GiB (its output is a hard link of the store's file):
 * the page-cache copy of the plain output was its largest extra cost (native/core/src/tee.rs),
 * and is now written with O_DIRECT: 0.45-0.47 before, 0.71-0.81 after (2026-12-08, quiet host).
 * Not gated: issue 21 asks for 0.8.
 */
const BENCH_ROOT_PASSWORD = randomBytes(8).toString("hex");

/** Records `hosts` (their certificates' names) as peers of the default cluster through the manager's REST API, signed in as root. */
async function recordPeers(api: string, hosts: string[]): Promise<void> {
  const call = async (path: string, body: unknown, token?: string) => {
    const res = await fetch(`${api}${path}`, { method: "POST", headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`manager ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as { token?: string };
  };
  const { token } = await call("/api/v1/users/signin", { name: "root", password: BENCH_ROOT_PASSWORD });
  for (const host_name of hosts) await call("/api/v1/peers", { host_name, type: "normal", ip: "127.0.0.1", port: 4000, download_port: 4001, proxy_port: 4002, scheduler_cluster_id: 1 }, token);
}

async function measureEncrypted(ctx: BenchContext): Promise<BenchResult> {
  const { size, rounds, nginx } = await serveContent(ctx);
  const certs = await stackCertificates(join(ctx.workDir, "pki-at-rest"), [
    { name: "manager", role: "manager" },
    { name: "sealed-a", role: "peer" },
    { name: "sealed-b", role: "peer" },
  ]);
  const manager = await startManager(
    {
      server: { dataDir: join(ctx.workDir, "manager"), rest: { addr: "127.0.0.1:0" }, grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 }, tls: certs.get("manager") }, logLevel: "silent" },
      encryption: { key: randomBytes(32).toString("base64") },
      metrics: { enable: false },
    },
    { logger: silentLogger(), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: BENCH_ROOT_PASSWORD } },
  );
  // The manager hands a tenant's key only to hosts it has on record in the tenant's clusters
  // (src/manager/tenant-access.ts): both sealed peers are recorded as an operator would.
  await recordPeers(`http://127.0.0.1:${manager.restPort}`, ["sealed-a", "sealed-b"]);
  const schedulerConfig = { server: { listenIP: "127.0.0.1", port: 0, logLevel: "silent" }, metrics: { enable: false }, seedPeer: { enable: false } };
  const plainScheduler = await startScheduler(schedulerConfig, { logger: silentLogger() });
  const sealedScheduler = await startScheduler(schedulerConfig, { logger: silentLogger() });
  const daemons: Daemon[] = [];
  const start = async (name: string, scheduler: { grpcPort: number }, sealed?: DaemonExtras["sealed"]) => {
    const d = await startDaemonProcess(join(ctx.workDir, `at-rest-${name}`), `bench-${name}`, [`127.0.0.1:${scheduler.grpcPort}`], { sealed });
    daemons.push(d);
    return d;
  };
  const sealed = (name: string) => ({ managerAddr: `127.0.0.1:${manager.grpcPort}`, tls: certs.get(name) });
  try {
    const pairs = {
      baseline: { a: await start("plain-a", plainScheduler), b: await start("plain-b", plainScheduler) },
      ours: { a: await start("sealed-a", sealedScheduler, sealed("sealed-a")), b: await start("sealed-b", sealedScheduler, sealed("sealed-b")) },
    };
    const times = await pairRounds(ctx, nginx, rounds, pairs, { ours: "sealed", baseline: "plaintext" });
    return durationResult("dfget-p2p-encrypted-1g", "s", median(times.ours), median(times.baseline), "the same P2P download with plaintext stores (dfget-p2p-cached-1g's setup)", {
      sizeBytes: size,
      rounds,
      oursRounds: times.ours,
      baselineRounds: times.baseline,
      peakRssBytes: { sealedParent: pairs.ours.a.peakRssBytes(), sealedChild: pairs.ours.b.peakRssBytes() },
    });
  } finally {
    for (const d of daemons) d.stop();
    await plainScheduler.close();
    await sealedScheduler.close();
    await manager.close();
    nginx.stop();
  }
}

const suite: BenchSuite = {
  suite: "daemon",
  benchmarks: [
    { name: "dfget-back-to-source-1g", run: (ctx) => measure(ctx, false) },
    { name: "dfget-p2p-cached-1g", run: (ctx) => measure(ctx, true) },
    { name: "dfget-p2p-mtls-1g", run: (ctx) => measureMtls(ctx) },
    { name: "dfget-p2p-encrypted-1g", run: (ctx) => measureEncrypted(ctx) },
  ],
};

export default suite;
