// Directory preheat and hdfs:// preheat through the real components on loopback (issue 23): a
// manager job whose URL ends in "/" has a seed peer list the directory (DfdaemonUpload
// ListTaskEntries with the job's credentials) and preheats each file as its own task; a peer's
// `dfget -r` of the same directory then gets every file from the seed, the origin sending no
// content again. Against a real HDFS (MiniDFSCluster, the delegation token reaching the namenode,
// never shown by the manager) and a real S3 (SeaweedFS, the secret key never shown). One file
// that fails fails the job naming it, and the others are still preheated.
import { createHash } from "node:crypto";
import { userInfo } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { taskIdFromUrl } from "../../src/common/ids.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { DEFAULT_FILTERED_QUERY_PARAMS } from "../../src/manager/jobs/args.js";
import { startMiniHdfs, startNamenodeProxy, type MiniHdfs, type NamenodeProxy } from "../helpers/hdfs.js";
import { statTask } from "../helpers/manager-api.js";
import { startSeaweedFs, type SeaweedFs } from "../helpers/object-stores.js";
import { makeContent } from "../helpers/origin.js";
import { preheatJob, secretShown, startPreheatStack, type PreheatStack } from "../helpers/preheat-stack.js";
import { cleanupTempDirs, runDfget, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";

const ROOT_PASSWORD = "dir-preheat-root-1";
const BUCKET = "damselfly-dir-preheat";
const TOKEN = "hdfs-delegation-token-preheat-7e6d5c";
const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const idOf = (url: string) => taskIdFromUrl({ url, filteredQueryParams: DEFAULT_FILTERED_QUERY_PARAMS });
// Each over 4 MiB: a peer fetches smaller files from the origin itself, as Dragonfly's do.
const files: Record<string, Buffer> = {
  "a.bin": makeContent(4 * MiB + 1, 61),
  "sub/b with space.bin": makeContent(5 * MiB + 9, 62),
  "sub/deeper/c.bin": makeContent(4 * MiB + 77, 63),
};
const encode = (p: string) => p.split("/").map(encodeURIComponent).join("/");

describe("directory preheat: a seed peer lists, each file becomes a task, a peer's dfget -r comes from the seed", () => {
  let hdfs: MiniHdfs;
  let proxy: NamenodeProxy;
  let store: SeaweedFs;
  let stack: PreheatStack;
  let seed: DaemonHandle;
  let peer: DaemonHandle;

  beforeAll(async () => {
    hdfs = await startMiniHdfs(tempDir("preheat-hdfs"));
    proxy = await startNamenodeProxy(hdfs);
    store = await startSeaweedFs(tempDir("preheat-dir-store"), BUCKET);
    for (const [p, body] of Object.entries(files)) {
      await hdfs.put(`/data/${p}`, body);
      await store.put(BUCKET, `dir/${p}`, body);
    }
    stack = await startPreheatStack("preheat-dir", ROOT_PASSWORD);
    const schedulers = [`127.0.0.1:${stack.scheduler.grpcPort}`];
    seed = await startTestDaemon({ name: "dir-preheat-seed", schedulers, seed: true });
    peer = await startTestDaemon({ name: "dir-preheat-peer", schedulers });
  }, 240_000);

  afterAll(async () => {
    await peer?.close().catch(() => undefined);
    await seed?.close().catch(() => undefined);
    await stack?.close();
    await store?.close().catch(() => undefined);
    await proxy?.close().catch(() => undefined);
    await hdfs?.close().catch(() => undefined);
    cleanupTempDirs();
  });

  /** Checks the job preheated every file of `dir` on the seed, then pulls the directory on the peer; returns nothing the origin sent in between is content. */
  async function preheatedThenPulled(dir: string, args: Record<string, unknown>, dfgetFlags: string[], served: () => number, beforePull: () => void = () => undefined): Promise<number> {
    const job = await preheatJob(stack, { url: dir, ...args });
    expect(job.state, JSON.stringify(job.result)).toBe("SUCCESS");
    const urls = Object.keys(files).map((p) => `${dir}${encode(p)}`);
    expect(job.result.job_states[0]?.results[0]?.success_tasks.map((t) => t.url).sort()).toEqual([...urls].sort());
    for (const u of urls) expect((await statTask(seed.uploadPort, idOf(u))).state, u).toBe("Succeeded");

    const before = served();
    beforePull();
    const out = tempDir("preheat-dir-out");
    const pulled = await runDfget(peer.socketPath, [dir, "-r", "-O", out, ...dfgetFlags]);
    expect(pulled.status, pulled.stderr).toBe(0);
    for (const [p, body] of Object.entries(files)) expect(sha256File(join(out, p)), p).toBe(sha(body));
    for (const u of urls) {
      const pieces = peer.storage.get(idOf(u))?.finished() ?? [];
      expect(pieces.length, u).toBeGreaterThan(0);
      expect(pieces.every((x) => x.parentId !== ""), u).toBe(true);
    }
    return served() - before;
  }

  it("hdfs:// directory with a delegation token: the token reaches the namenode and is never shown; the datanode sends nothing for the peer", async () => {
    const dir = `hdfs://${proxy.address}/data/`;
    const mark = proxy.requests.length;
    let pullMark = 0;
    const sent = await preheatedThenPulled(dir, { hdfs: { delegation_token: TOKEN } }, ["--hdfs-delegation-token", TOKEN], () => proxy.served(), () => (pullMark = proxy.requests.length));
    // The seed read every file; the peer's dfget lists (the namenode) but reads no file again.
    const preheat = proxy.requests.slice(mark, pullMark);
    for (const p of Object.keys(files)) expect(preheat.some((r) => r.startsWith(`/webhdfs/v1/data/${encode(p)}?`) && r.includes("op=OPEN")), p).toBe(true);
    expect(proxy.requests.slice(pullMark).filter((r) => r.includes("op=OPEN"))).toEqual([]);
    expect(sent).toBe(0);
    for (const r of proxy.requests.slice(mark)) expect(new URL(r, "http://x").searchParams.get("delegation"), r).toBe(TOKEN);
    const [job] = await stack.manager.db.query<{ id: number }>("SELECT id FROM jobs ORDER BY id DESC LIMIT 1");
    expect(await secretShown(stack, job!.id, TOKEN)).toBe(false);
  });

  it("s3:// directory: every object preheated, the store sends the peer only its listing", async () => {
    const dir = `s3://${BUCKET}/dir/`;
    const keys = { endpoint: store.endpoint, region: "us-east-1", access_key_id: store.accessKeyId, access_key_secret: store.secretAccessKey };
    const flags = ["--storage-endpoint", store.endpoint, "--storage-region", "us-east-1", "--storage-access-key-id", store.accessKeyId, "--storage-access-key-secret", store.secretAccessKey];
    const sent = await preheatedThenPulled(dir, { object_storage: keys }, flags, () => store.proxy.served());
    expect(sent).toBeLessThan(Math.min(...Object.values(files).map((b) => b.length)));
    const [job] = await stack.manager.db.query<{ id: number }>("SELECT id FROM jobs ORDER BY id DESC LIMIT 1");
    expect(await secretShown(stack, job!.id, store.secretAccessKey)).toBe(false);
  });

  it("a directory without files fails the job naming it (a store cannot tell it from a mistyped prefix)", async () => {
    const dir = `s3://${BUCKET}/nothing-here/`;
    const job = await preheatJob(stack, { url: dir, object_storage: { endpoint: store.endpoint, region: "us-east-1", access_key_id: store.accessKeyId, access_key_secret: store.secretAccessKey } });
    expect(job.state).toBe("FAILURE");
    expect(job.result.job_states[0]?.error).toMatch(new RegExp(`${dir}: the directory lists no files`));
    expect(job.result.job_states[0]?.error).not.toContain(store.secretAccessKey);
  });

  it("one file that fails fails the job naming it; the other files are still preheated", async () => {
    await hdfs.put("/partial/kept.bin", makeContent(2 * MiB, 64));
    await hdfs.put("/partial/gone.bin", makeContent(2 * MiB, 65));
    const dir = `hdfs://${proxy.address}/partial/`;
    // The seed's first request for gone.bin is held while the file is deleted: listed, then missing.
    const gate = proxy.hold((u) => u.pathname === "/webhdfs/v1/partial/gone.bin");
    const job = preheatJob(stack, { url: dir, hdfs: { delegation_token: TOKEN } });
    await gate.reached;
    const del = await fetch(`http://${hdfs.namenode}/webhdfs/v1/partial/gone.bin?op=DELETE&user.name=${encodeURIComponent(userInfo().username)}`, { method: "DELETE" });
    expect(del.status).toBe(200);
    gate.release();
    const done = await job;
    expect(done.state).toBe("FAILURE");
    const [states] = done.result.job_states;
    expect(states?.error).toContain(`${dir}gone.bin`);
    expect(states?.error).not.toContain(TOKEN);
    expect(states?.results[0]?.success_tasks.map((t) => t.url)).toEqual([`${dir}kept.bin`]);
    expect(states?.results[0]?.failure_tasks.map((t) => t.url)).toEqual([`${dir}gone.bin`]);
    expect((await statTask(seed.uploadPort, idOf(`${dir}kept.bin`))).state).toBe("Succeeded");
    expect(seed.storage.get(idOf(`${dir}gone.bin`))?.meta.state).not.toBe("succeeded");
  });
});
