// One origin, two clients, same run: `dfget URL -O file` through a resident dfdaemon going back
// to the source against the origin's own client writing the same content to the same disk
// (the s3 and hdfs suites). Rounds alternate who goes first; every round's task is deleted
// from the daemon afterwards, so each of ours goes to the origin; every output's sha256 is
// checked against the content's (outside the timing). The baseline's time runs until its
// file is on the disk (fdatasync), as ours does (client.ts); without the fdatasync it stays in
// the details (ratioWithoutSync).
import { rmSync } from "node:fs";
import { join } from "node:path";
import { taskIdFromUrl } from "../../src/common/ids.js";
import { sha256File } from "../../test/e2e/harness/swarm.js";
import { fdatasyncSeconds } from "./client.js";
import { deleteTask, dfgetSeconds, startDaemonProcess } from "./dfdaemon.js";
import { durationResult, median } from "./measure.js";
import type { BenchContext, BenchResult } from "./types.js";

export interface BackToSourceComparison {
  name: string;
  /** The content's size and sha256 (hex). */
  size: number;
  sha256: string;
  rounds: number;
  /** What dfget downloads, with the flags it needs (endpoint, keys). */
  url: string;
  dfgetArgs: string[];
  /** A small object of the same origin: one unmeasured download each takes one-time costs out. */
  warmUrl: string;
  baselineName: string;
  /** The baseline client writing the content (or, with `warm`, the small object) to `out`: seconds until it exits. */
  baseline(out: string, warm: boolean): Promise<number>;
}

export async function compareBackToSource(ctx: BenchContext, c: BackToSourceComparison): Promise<BenchResult> {
  const daemon = await startDaemonProcess(join(ctx.workDir, `${c.name}-daemon`), `bench-${c.name}`, []);
  try {
    // A resident daemon is measured, not a fresh one (bench/daemon.ts): one small download
    // first loads the backend's client (the SDKs load on first use) and opens its connections.
    // The baseline's first run reads its interpreter and modules from the disk: once unmeasured too.
    const warm = join(ctx.workDir, "warm");
    await dfgetSeconds(daemon.socket, c.warmUrl, warm, c.dfgetArgs);
    rmSync(warm, { force: true });
    await c.baseline(warm, true);
    rmSync(warm, { force: true });
    const ours: number[] = [];
    const baseline: number[] = [];
    const baselineNoSync: number[] = [];
    const check = (out: string, who: string) => {
      const got = sha256File(out);
      if (got !== c.sha256) throw new Error(`${c.name}: ${who}'s output has sha256 ${got}, the content ${c.sha256}`);
    };
    const taskId = taskIdFromUrl({ url: c.url });
    for (let i = 0; i < c.rounds; i++) {
      const out = join(ctx.workDir, `${c.name}-out-${i}`);
      const runOurs = async () => {
        ours.push(await dfgetSeconds(daemon.socket, c.url, out, c.dfgetArgs));
        check(out, "dfget");
        rmSync(out, { force: true });
        // A task left behind would make the next round a cache hit.
        const refused = await deleteTask(daemon.socket, taskId);
        if (refused) throw new Error(`${c.name}: deleting task ${taskId} after round ${i}: ${refused.message}`);
      };
      const runBaseline = async () => {
        const s = await c.baseline(out, false);
        baselineNoSync.push(s);
        baseline.push(s + fdatasyncSeconds(out));
        check(out, c.baselineName);
        rmSync(out, { force: true });
      };
      if (i % 2 === 0) {
        await runOurs();
        await runBaseline();
      } else {
        await runBaseline();
        await runOurs();
      }
      ctx.log(`round ${i}: dfget ${ours.at(-1)?.toFixed(2)}s, ${c.baselineName}+fdatasync ${baseline.at(-1)?.toFixed(2)}s (without ${baselineNoSync.at(-1)?.toFixed(2)}s)`);
    }
    return durationResult(c.name, "s", median(ours), median(baseline), `${c.baselineName}, then fdatasync`, {
      sizeBytes: c.size,
      rounds: c.rounds,
      oursRounds: ours,
      baselineRounds: baseline,
      baselineWithoutSyncRounds: baselineNoSync,
      ratioWithoutSync: median(baselineNoSync) / median(ours),
      sha256Checked: 2 * c.rounds,
      peakRssBytes: daemon.peakRssBytes(),
    });
  } finally {
    daemon.stop();
  }
}
