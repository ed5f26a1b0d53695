// dfget-hdfs-1g (issue 23): `dfget hdfs://namenode/path -O file` through a resident dfdaemon
// going to HDFS (WebHDFS: an OPEN per piece, each redirected to the datanode), against a plain
// WebHDFS read with curl (`curl -L` of OPEN: the namenode's 307 followed to the datanode, the
// whole file in one response) to the same disk, in the same run, rounds alternating
// (lib/back-to-source.ts). HDFS is Hadoop's MiniDFSCluster on 127.0.0.1 (test/helpers/hdfs.ts,
// scripts/install-hdfs.sh; missing, it fails the bench). Ratio = curl time / dfget time,
// reported, not gated. First measured 2026-12-08 in short mode under a CI run (load average
// ~18): 0.298 (dfget 18.7 s, curl 5.6 s).
// With one abort listener per read and the GETFILESTATUS after each read shared by the reads
// in flight (hdfs.ts), short mode under a lighter load (load average ~9): 0.638 (dfget 5.01 s,
// curl 3.20 s); the bytes still go through undici and JS piece buffers.
import { mkdirSync, rmSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { startMiniHdfs } from "../test/helpers/hdfs.js";
import { sha256File } from "../test/e2e/harness/swarm.js";
import { compareBackToSource } from "./lib/back-to-source.js";
import { clientSeconds } from "./lib/client.js";
import { writeContent } from "./lib/content.js";
import type { BenchContext, BenchResult, BenchSuite } from "./lib/types.js";

const MiB = 1024 * 1024;

async function measure(ctx: BenchContext): Promise<BenchResult> {
  // 1 GiB and five rounds even in short mode, as the other dfget benches.
  const size = 1024 * MiB;
  const rounds = ctx.short ? 5 : 7;
  const dir = join(ctx.workDir, "hdfs");
  mkdirSync(join(dir, "cluster"), { recursive: true });
  const hdfs = await startMiniHdfs(join(dir, "cluster"));
  try {
    // Written once, uploaded, and gone from the local disk: only HDFS holds it.
    const content = join(dir, "file.bin");
    writeContent(content, size);
    const sha256 = sha256File(content);
    await hdfs.putFile("/bench/file.bin", content);
    writeContent(content, 16 * MiB);
    await hdfs.putFile("/bench/warm.bin", content);
    rmSync(content);
    const open = (path: string) => `http://${hdfs.namenode}/webhdfs/v1${path}?op=OPEN&user.name=${encodeURIComponent(userInfo().username)}`;
    return await compareBackToSource(ctx, {
      name: "dfget-hdfs-1g",
      size,
      sha256,
      rounds,
      url: hdfs.url("/bench/file.bin"),
      warmUrl: hdfs.url("/bench/warm.bin"),
      dfgetArgs: [],
      baselineName: "curl -L of WebHDFS OPEN",
      baseline: (out, warm) => clientSeconds("curl", "curl", ["-s", "-f", "-L", "-o", out, open(warm ? "/bench/warm.bin" : "/bench/file.bin")]),
    });
  } finally {
    await hdfs.close();
  }
}

const suite: BenchSuite = {
  suite: "hdfs",
  benchmarks: [{ name: "dfget-hdfs-1g", run: measure }],
};

export default suite;
