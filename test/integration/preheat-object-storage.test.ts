// Preheat of an s3:// object through the real components on loopback (issue 23): a manager
// job with Dragonfly's `object_storage` args (a reader's access key created through
// SeaweedFS's IAM API) goes manager → scheduler (PreheatFile) → seed peer (DownloadTask with
// Download.object_storage), the seed fetches the object from SeaweedFS; then a peer's dfget of
// the same s3:// URL gets every piece from the seed, and the store served the object about
// once. The secret key never appears in the job row or the jobs API.
import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { taskIdFromUrl } from "../../src/common/ids.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { DEFAULT_FILTERED_QUERY_PARAMS } from "../../src/manager/jobs/args.js";
import { statTask } from "../helpers/manager-api.js";
import { startSeaweedFs, type SeaweedFs } from "../helpers/object-stores.js";
import { makeContent } from "../helpers/origin.js";
import { startPreheatStack, type PreheatStack } from "../helpers/preheat-stack.js";
import { cleanupTempDirs, runDfget, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";

const ROOT_PASSWORD = "s3-preheat-root-1";
const BUCKET = "damselfly-preheat";
const MiB = 1024 * 1024;
const SIZE = 32 * MiB + 5;

interface JobView {
  id: number;
  state: string;
  args: { object_storage?: Record<string, unknown> };
  result: { job_states: Array<{ error: string; results: Array<{ success_tasks: Array<{ url: string; hostname: string; ip: string }>; failure_tasks: unknown[] }> }> };
}

describe("preheat of an s3:// object: manager job → scheduler → seed peer, then a peer's dfget comes from the seed", () => {
  let store: SeaweedFs;
  let stack: PreheatStack;
  let seed: DaemonHandle;
  let peer: DaemonHandle;
  const content = makeContent(SIZE, 31);
  const want = createHash("sha256").update(content).digest("hex");
  const url = `s3://${BUCKET}/models/preheated%20weights.bin`;

  beforeAll(async () => {
    store = await startSeaweedFs(tempDir("preheat-s3-store"), BUCKET);
    await store.put(BUCKET, "models/preheated weights.bin", content);
    stack = await startPreheatStack("preheat-s3", ROOT_PASSWORD);
    const schedulers = [`127.0.0.1:${stack.scheduler.grpcPort}`];
    seed = await startTestDaemon({ name: "s3-preheat-seed", schedulers, seed: true });
    peer = await startTestDaemon({ name: "s3-preheat-peer", schedulers });
  });

  afterAll(async () => {
    await peer?.close().catch(() => undefined);
    await seed?.close().catch(() => undefined);
    await stack?.close();
    await store?.close().catch(() => undefined);
    cleanupTempDirs();
  });

  it("the seed peer holds the object after the job, the peer's dfget gets every piece from it, and the store served it once", async () => {
    const { json, pat, manager } = stack;
    const before = store.proxy.served();
    const objectStorage = { endpoint: store.endpoint, region: "us-east-1", access_key_id: store.accessKeyId, access_key_secret: store.secretAccessKey };
    const created = await json<JobView>("POST", "/oapi/v1/jobs", pat, { type: "preheat", args: { type: "file", url, object_storage: objectStorage }, scheduler_cluster_ids: null });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    expect(created.body.args.object_storage).toEqual({ ...objectStorage, access_key_secret: "[redacted]" });

    let job: JobView | undefined;
    await expect
      .poll(
        async () => {
          job = (await json<JobView>("GET", `/oapi/v1/jobs/${created.body.id}`, pat)).body;
          return job.state;
        },
        { timeout: 120_000, interval: 200 },
      )
      .not.toBe("PENDING");
    expect(job?.state, JSON.stringify(job?.result)).toBe("SUCCESS");
    expect(job?.result.job_states[0]?.results[0]?.success_tasks).toEqual([{ url, hostname: "s3-preheat-seed", ip: "127.0.0.1" }]);

    // The seed holds the task dfget will ask for (same id: URL and default filter).
    const taskId = taskIdFromUrl({ url, filteredQueryParams: DEFAULT_FILTERED_QUERY_PARAMS });
    expect(await statTask(seed.uploadPort, taskId)).toMatchObject({ id: taskId, state: "Succeeded", contentLength: SIZE });
    expect(store.proxy.served() - before).toBeGreaterThanOrEqual(SIZE);

    const out = join(tempDir("preheat-s3-out"), "weights.bin");
    const flags = ["--storage-endpoint", store.endpoint, "--storage-region", "us-east-1", "--storage-access-key-id", store.accessKeyId, "--storage-access-key-secret", store.secretAccessKey];
    const pulled = await runDfget(peer.socketPath, [url, "-O", out, ...flags]);
    expect(pulled.status, pulled.stderr).toBe(0);
    expect(sha256File(out)).toBe(want);
    const task = peer.storage.list().find((t) => t.id === taskId);
    expect(task).toBeDefined();
    const pieces = task!.finished();
    expect(pieces.length).toBeGreaterThan(1);
    // The seed is the only other peer: every piece with a parent came from it, none from the store.
    expect(pieces.every((p) => p.parentId !== "")).toBe(true);
    const served = store.proxy.served() - before;
    expect(served).toBeLessThanOrEqual(1.05 * SIZE);

    // The secret key is in neither the stored job nor anything the jobs API returns.
    const [row] = await manager.db.query<{ args: string; result: string }>("SELECT args::text AS args, result::text AS result FROM jobs WHERE id = $1", [created.body.id]);
    expect(row?.args).not.toContain(store.secretAccessKey);
    expect(row?.result).not.toContain(store.secretAccessKey);
    expect(JSON.stringify((await json<unknown>("GET", "/oapi/v1/jobs?per_page=100", pat)).body)).not.toContain(store.secretAccessKey);
  });
});
