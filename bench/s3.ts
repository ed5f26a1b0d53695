// dfget-s3-back-to-source-1g (issue 23): `dfget s3://bucket/key -O file` through a resident
// dfdaemon going to the object store (a seed's back-to-source), against the AWS CLI's
// `aws s3 cp s3://bucket/key file` (its ranged GETs on 10 threads by default) from the same
// store to the same disk, in the same run, rounds alternating (lib/back-to-source.ts). The
// store is SeaweedFS's S3 gateway on 127.0.0.1 (test/helpers/object-stores.ts), reached
// directly by both clients with the same reader's access key. Ratio = AWS CLI time / dfget
// time (≥ 1: dfget is at least as fast). SeaweedFS comes from scripts/install-object-stores.sh
// and the AWS CLI from scripts/install-awscli.sh; either missing fails the bench.
// First measured 2026-12-08 in short mode on this 2-core host under a CI run (load average
// ~18): 0.506 (dfget 16.6 s, aws 8.4 s). The daemon then spent ~5 CPU-s per GiB on the S3 path
// (the AWS CLI ~2.2, SeaweedFS ~2 for either): a CPU profile showed garbage collection, the
// copy of the SDK's response chunks into freshly allocated (zeroed, page-faulting) piece
// buffers and node:http's parsing on top. The SDK alone read the object in 5-6.6 s in 4 MiB
// ranges (one or eight at once) and in 3.2 s in 16 MiB ones.
// Since the pieces go through the native origin client (each a GET presigned by the SDK's
// signer, object-storage.ts), short mode under a lighter load (load average ~9): 1.563 (dfget
// 2.82 s, aws 4.41 s).
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startSeaweedFs } from "../test/helpers/object-stores.js";
import { sha256File } from "../test/e2e/harness/swarm.js";
import { compareBackToSource } from "./lib/back-to-source.js";
import { clientSeconds } from "./lib/client.js";
import { writeContent } from "./lib/content.js";
import type { BenchContext, BenchResult, BenchSuite } from "./lib/types.js";

const MiB = 1024 * 1024;
const AWS_PYTHON = join(process.env.DAMSELFLY_CACHE ?? "/var/cache/damselfly", "venv-awscli", "bin", "python");
const BUCKET = "bench";
const REGION = "us-east-1";

async function measure(ctx: BenchContext): Promise<BenchResult> {
  if (!existsSync(AWS_PYTHON)) throw new Error(`${AWS_PYTHON} is missing: run scripts/install-awscli.sh (.ci/run does)`);
  // 1 GiB even in short (CI) mode, as dfget-back-to-source-1g: the AWS CLI starts a Python
  // interpreter (~0.4 s here) and dfget a Node process (~0.1 s), so with a smaller object the
  // gate would weigh start-ups rather than the transfer. Five rounds, as there.
  const size = 1024 * MiB;
  const rounds = ctx.short ? 5 : 7;
  const dir = join(ctx.workDir, "s3");
  mkdirSync(join(dir, "weed"), { recursive: true });
  const store = await startSeaweedFs(join(dir, "weed"), BUCKET);
  try {
    // Written once, uploaded, and gone from the local disk: only the store holds it.
    const content = join(dir, "file.bin");
    writeContent(content, size);
    const sha256 = sha256File(content);
    await store.putFile(BUCKET, "file.bin", content);
    writeContent(content, 16 * MiB);
    await store.putFile(BUCKET, "warm.bin", content);
    rmSync(content);
    // The CLI reads nothing from the host's ~/.aws: keys and region come from here alone.
    const env = {
      ...process.env,
      AWS_ACCESS_KEY_ID: store.accessKeyId,
      AWS_SECRET_ACCESS_KEY: store.secretAccessKey,
      AWS_DEFAULT_REGION: REGION,
      AWS_CONFIG_FILE: join(dir, "aws-config"),
      AWS_SHARED_CREDENTIALS_FILE: join(dir, "aws-credentials"),
      AWS_EC2_METADATA_DISABLED: "true",
    };
    const aws = (key: string, out: string) => clientSeconds("aws s3 cp", AWS_PYTHON, ["-m", "awscli", "s3", "cp", "--only-show-errors", "--no-progress", "--endpoint-url", store.gateway, `s3://${BUCKET}/${key}`, out], env);
    return await compareBackToSource(ctx, {
      name: "dfget-s3-back-to-source-1g",
      size,
      sha256,
      rounds,
      url: `s3://${BUCKET}/file.bin`,
      warmUrl: `s3://${BUCKET}/warm.bin`,
      dfgetArgs: ["--storage-endpoint", store.gateway, "--storage-region", REGION, "--storage-access-key-id", store.accessKeyId, "--storage-access-key-secret", store.secretAccessKey],
      baselineName: "aws s3 cp",
      baseline: (out, warm) => aws(warm ? "warm.bin" : "file.bin", out),
    });
  } finally {
    await store.close();
  }
}

const suite: BenchSuite = {
  suite: "s3",
  benchmarks: [{ name: "dfget-s3-back-to-source-1g", run: measure }],
};

export default suite;
