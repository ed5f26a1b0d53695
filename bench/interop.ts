// Serving Dragonfly's own client (issue 19). peer-to-dragonfly-1g: a Dragonfly dfdaemon child
// pulls a task whose only holder is one of our daemons (ours) or a Dragonfly dfdaemon (the
// baseline), under our scheduler on loopback, timed by Dragonfly's dfget from start to exit.
// Each round uses a new task for each side (the URL's query differs; nginx ignores it) and the
// same child daemon, so both sides meet the same child, the same scheduler and the same disk.
// The parents fetched their copy from nginx before the timing starts, and the writeback of
// what the last downloads wrote is settled (sync) before each timed one: the child is CPU-
// and disk-bound on a 2-core host, and a download that starts under another's writeback was
// up to 2x slower (same side, same round), which decided the ratio more than the parents did.
import { spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { cleanupTempDirs, downloadVia, spawnDaemonProcess, writeDaemonConfigFile } from "../test/helpers/swarm.js";
import { until } from "../test/helpers/until.js";
import { dragonflyDfget, startDragonflyDaemon, type DragonflyDaemon } from "../test/helpers/dragonfly.js";
import { startOurStack } from "../test/interop/harness/stack.js";
import { durationResult, median } from "./lib/measure.js";
import { startNginx } from "./lib/nginx.js";
import type { BenchSuite } from "./lib/types.js";
import { writeContent } from "./lib/content.js";

const MiB = 1 << 20;

async function dfgetSeconds(d: DragonflyDaemon, url: string, out: string): Promise<number> {
  spawnSync("sync", [], { stdio: "ignore" });
  const t0 = process.hrtime.bigint();
  const r = await dragonflyDfget(d.socket, url, out, [], 600_000);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  rmSync(out, { force: true });
  if (r.code !== 0) throw new Error(`Dragonfly dfget ${url} exited ${r.code ?? r.signal}: ${r.output.slice(-2000)}`);
  return s;
}

const suite: BenchSuite = {
  suite: "interop",
  benchmarks: [
    {
      name: "peer-to-dragonfly-1g",
      run: async (ctx) => {
        // 1 GiB in short (CI) mode too: at 256 MiB the child's own start and its scheduling
        // are most of a run. Seven rounds: single rounds spread ±15% on a quiet host (±40% on
        // a busy one); with a page-cache parent (storage.directIO: never) the two sides are
        // close (medians on 2026-12-07: 1.021, 1.080, 1.004, 1.018), so the median must be steady.
        const size = 1024 * MiB;
        const rounds = 7;
        const www = join(ctx.workDir, "interop-www");
        mkdirSync(www, { recursive: true });
        writeContent(join(www, "blob"), size);
        const nginx = await startNginx(ctx.workDir, www, "blob");
        const stack = await startOurStack({ seed: false });
        const dfs: DragonflyDaemon[] = [];
        const dragonfly = async (name: string) => {
          const d = await startDragonflyDaemon({ name, dir: join(ctx.workDir, name), managerAddr: stack.managerAddr });
          dfs.push(d);
          return d;
        };
        let ourProc: ChildProcess | undefined;
        try {
          // Our parent is a dfdaemon process of its own, as Dragonfly's parent is: in this
          // process it shared one event loop with the scheduler that answers the child.
          const parentDir = join(ctx.workDir, "bench-our-parent");
          mkdirSync(parentDir, { recursive: true });
          const ourParent = writeDaemonConfigFile(parentDir, "bench-our-parent", {
            scheduler: { addrs: [stack.schedulerAddr], announceInterval: "30s" },
            security: { allowedBackToSourceCIDRs: ["127.0.0.0/8"] },
          });
          ourProc = spawnDaemonProcess(ourParent.config);
          await until(() => existsSync(ourParent.socket), "our parent's socket", 60_000);
          const theirParent = await dragonfly("bench-df-parent");
          const child = await dragonfly("bench-df-child");
          const ours: number[] = [];
          const baseline: number[] = [];
          for (let r = 0; r < rounds; r++) {
            const oursUrl = `http://127.0.0.1:${nginx.port}/blob?ours=${r}`;
            const theirsUrl = `http://127.0.0.1:${nginx.port}/blob?theirs=${r}`;
            await downloadVia(ourParent.socket, { url: oursUrl, outputPath: join(ctx.workDir, `parent-ours-${r}`) });
            rmSync(join(ctx.workDir, `parent-ours-${r}`), { force: true });
            await dfgetSeconds(theirParent, theirsUrl, join(ctx.workDir, `parent-theirs-${r}`));
            // Alternate who goes first so neither always meets the warmer page cache.
            const runOurs = async () => ours.push(await dfgetSeconds(child, oursUrl, join(ctx.workDir, `child-ours-${r}`)));
            const runTheirs = async () => baseline.push(await dfgetSeconds(child, theirsUrl, join(ctx.workDir, `child-theirs-${r}`)));
            if (r % 2 === 0) {
              await runOurs();
              await runTheirs();
            } else {
              await runTheirs();
              await runOurs();
            }
            ctx.log(`peer-to-dragonfly round ${r}: ours ${ours.at(-1)?.toFixed(2)} s, Dragonfly parent ${baseline.at(-1)?.toFixed(2)} s`);
          }
          // The ratio is the median of each round's own ratio: the two downloads of a round run
          // back to back and meet the same host. The child's time is bimodal on this host (about
          // 1.4 s or 2.6 s, whichever state its memory is in, for either parent), so the ratio of
          // the two sides' medians could fall between the modes: on 2026-12-07 it was 0.600 while
          // the rounds' own ratios were 1.05, 0.96, 0.97, 1.12, 0.97, 0.92, 0.44 (median 0.97).
          // ratioOfMedians (the method until then) is still reported.
          const paired = ours.map((o, i) => (baseline[i] ?? 0) / o);
          const result = durationResult("peer-to-dragonfly-1g", "s", median(ours), median(baseline), "Dragonfly dfdaemon parent → Dragonfly child", {
            size,
            oursRounds: ours,
            baselineRounds: baseline,
            roundRatios: paired,
            ratioOfMedians: median(baseline) / median(ours),
          });
          return { ...result, ratio: median(paired) };
        } finally {
          for (const d of dfs) await d.stop("SIGTERM", 5000);
          if (ourProc && ourProc.exitCode === null && ourProc.signalCode === null) {
            const exited = new Promise((r) => ourProc?.once("exit", r));
            ourProc.kill("SIGTERM");
            await exited;
          }
          await stack.close();
          nginx.stop();
          cleanupTempDirs();
        }
      },
    },
  ],
};

export default suite;
