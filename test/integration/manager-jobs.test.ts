// Jobs end to end on PGlite and PostgreSQL: Harbor-shaped preheats (a file served on loopback,
// an image in a registry with the bearer-token flow and a manifest list) reach SUCCESS through
// a scheduler's PreheatFile/StatFile; SSRF refusals fail the job; jobs survive a manager
// restart; get_task / delete_task / sync_peers talk to peers; credentials leave the database;
// an s3:// preheat's secrets reach the scheduler but never the database or the API.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { status, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGrpcServer, type GrpcServerHandle } from "../../src/common/grpc/server.js";
import { taskIdFromUrl } from "../../src/common/ids.js";
import { silentLogger } from "../../src/common/logger.js";
import { SsrfPolicy } from "../../src/common/ssrf.js";
import { Host, Task } from "../../src/gen/common/v2/common.js";
import { DfdaemonUploadService } from "../../src/gen/dfdaemon/v2/dfdaemon.js";
import { SchedulerService, type PreheatFileRequest, type StatFileRequest, type StatFileResponse } from "../../src/gen/scheduler/v2/scheduler.js";
import { buildManagerApp } from "../../src/manager/app.js";
import { ensureRootUser } from "../../src/manager/auth/bootstrap.js";
import { JwtService, loadSigningKey } from "../../src/manager/auth/tokens.js";
import type { Database } from "../../src/manager/db/database.js";
import { collectGarbage } from "../../src/manager/gc.js";
import { JobRunner } from "../../src/manager/jobs/runner.js";
import { JobSecrets } from "../../src/manager/jobs/secrets.js";
import { databaseVariants } from "../../src/manager/testing.js";
import { pushImage, REGISTRY_BIN, REGISTRY_SKIP, startRealRegistry } from "../helpers/registry.js";

const { variants, skipped } = databaseVariants();
if (skipped) {
  console.warn(`manager-jobs: ${skipped}`);
  describe("manager jobs on PostgreSQL", () => it.skip(skipped, () => undefined));
}

/**
 * A scheduler that "downloads" instantly: StatFile reports a URL finished once PreheatFile saw it
 * — except a URL under /stall/, whose download never ends (a job preheating it runs until canceled).
 */
class FakeScheduler {
  readonly preheats: PreheatFileRequest[] = [];
  readonly stats: string[] = [];
  readonly done = new Set<string>();
  handle!: GrpcServerHandle;
  async start() {
    const impl = {
      preheatFile: (call: ServerUnaryCall<PreheatFileRequest, object>, cb: sendUnaryData<object>) => {
        this.preheats.push(call.request);
        if (call.request.url.includes("/broken")) return cb({ code: status.FAILED_PRECONDITION, details: "no seed peer" });
        if (!call.request.url.includes("/stall/")) this.done.add(call.request.url);
        cb(null, {});
      },
      statFile: (call: ServerUnaryCall<StatFileRequest, StatFileResponse>, cb: sendUnaryData<StatFileResponse>) => {
        this.stats.push(call.request.url);
        const finished = this.done.has(call.request.url);
        cb(null, { peers: finished ? [{ ip: "127.0.0.1", hostname: "seed-1", cachedFiles: [{ url: call.request.url, isFinished: true }] }] : [] });
      },
      listHosts: (_call: unknown, cb: sendUnaryData<object>) => cb(null, { hosts: this.hosts }),
    };
    this.handle = await startGrpcServer([{ definition: SchedulerService, implementation: impl }], "127.0.0.1", 0);
  }
  hosts: object[] = [];
}

/** A peer's upload service holding some tasks. */
class FakeDaemon {
  readonly tasks = new Set<string>();
  handle!: GrpcServerHandle;
  async start() {
    const impl = {
      statTask: (call: ServerUnaryCall<{ taskId: string }, object>, cb: sendUnaryData<object>) =>
        this.tasks.has(call.request.taskId) ? cb(null, Task.fromPartial({ id: call.request.taskId, state: "Succeeded" })) : cb({ code: status.NOT_FOUND, details: "no task" }),
      deleteTask: (call: ServerUnaryCall<{ taskId: string }, object>, cb: sendUnaryData<object>) => {
        if (!this.tasks.delete(call.request.taskId)) return cb({ code: status.NOT_FOUND, details: "no task" });
        cb(null, {});
      },
    };
    this.handle = await startGrpcServer([{ definition: DfdaemonUploadService, implementation: impl }], "127.0.0.1", 0);
  }
}

const sha = (s: string) => `sha256:${createHash("sha256").update(s).digest("hex")}`;

/** A registry with token auth and a two-platform image. */
function fakeRegistry(): Promise<{ server: Server; port: number; requests: string[] }> {
  const requests: string[] = [];
  const config = { amd64: sha("config-amd64"), arm64: sha("config-arm64") };
  const layers = { amd64: [sha("layer-a1"), sha("layer-a2")], arm64: [sha("layer-b1")] };
  const manifests: Record<string, object> = {};
  for (const arch of ["amd64", "arm64"] as const) {
    manifests[arch] = { schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { digest: config[arch] }, layers: layers[arch].map((digest) => ({ digest })) };
  }
  const digestOf = (arch: "amd64" | "arm64") => sha(JSON.stringify(manifests[arch]));
  const index = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: (["amd64", "arm64"] as const).map((arch) => ({ digest: digestOf(arch), platform: { os: "linux", architecture: arch } })),
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests.push(`${req.method} ${req.url} ${req.headers.authorization ?? "-"}`);
    const port = (server.address() as AddressInfo).port;
    if (req.url?.startsWith("/token")) {
      if (req.headers.authorization !== `Basic ${Buffer.from("alice:s3cret").toString("base64")}`) return res.writeHead(401).end();
      return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "tok-123" }));
    }
    if (req.headers.authorization !== "Bearer tok-123") {
      return res.writeHead(401, { "www-authenticate": `Bearer realm="http://127.0.0.1:${port}/token",service="fake",scope="repository:library/app:pull"` }).end();
    }
    if (req.url === "/v2/library/app/manifests/latest") return res.writeHead(200, { "content-type": index.mediaType }).end(JSON.stringify(index));
    for (const arch of ["amd64", "arm64"] as const) {
      if (req.url === `/v2/library/app/manifests/${digestOf(arch)}`) return res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json" }).end(JSON.stringify(manifests[arch]));
    }
    res.writeHead(404).end();
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as AddressInfo).port, requests })));
}


if (!REGISTRY_BIN) console.warn(`manager-jobs: ${REGISTRY_SKIP}`);

describe.each(variants)("manager jobs on $name", (variant) => {
  let db: Database;
  let cleanup: () => Promise<void>;
  let app: FastifyInstance;
  let runner: JobRunner;
  let scheduler: FakeScheduler;
  let daemon: FakeDaemon;
  let registry: Awaited<ReturnType<typeof fakeRegistry>>;
  let pat: string;
  let rootToken: string;
  const allowLoopback = new SsrfPolicy({ allowCidrs: ["127.0.0.0/8"] });
  // This manager's: shared by its API (JobService) and whichever runner it has at the time.
  const secrets = new JobSecrets(undefined, 3000);
  const newRunner = (ssrf = allowLoopback, held = secrets) => new JobRunner({ db, logger: silentLogger(), ssrf, pollIntervalMs: 50, statIntervalMs: 20, leaseMs: 3000, rpcTimeoutMs: 5000, secrets: held });

  const waitJob = async (id: number) => {
    for (let i = 0; i < 1000; i++) {
      const r = await app.inject({ method: "GET", url: `/oapi/v1/jobs/${id}`, headers: { authorization: `Bearer ${pat}` } });
      const job = r.json<{ state: string; result: { job_states: Array<{ error: string; state: string; results: Array<Record<string, unknown>> }> }; args: Record<string, unknown> }>();
      if (job.state !== "PENDING") return job;
      await new Promise((res) => setTimeout(res, 20));
    }
    throw new Error(`job ${id} never finished`);
  };
  const createJob = async (body: object) => {
    const r = await app.inject({ method: "POST", url: "/oapi/v1/jobs", headers: { authorization: `Bearer ${pat}` }, payload: body });
    expect(r.statusCode, r.body).toBe(200);
    return r.json<{ id: number }>().id;
  };

  beforeAll(async () => {
    const opened = await variant.open();
    db = opened.db;
    cleanup = () => opened.cleanup();
    scheduler = new FakeScheduler();
    await scheduler.start();
    daemon = new FakeDaemon();
    await daemon.start();
    registry = await fakeRegistry();
    await db.query("INSERT INTO schedulers (host_name, ip, port, state, features, scheduler_cluster_id) VALUES ('sched-1', '127.0.0.1', $1, 'active', '[\"schedule\",\"preheat\"]', 1)", [scheduler.handle.port]);
    // This file creates jobs back to back; the per-cluster rate limit is tested in manager-api.
    await db.query(`UPDATE scheduler_clusters SET config = config || '{"job_rate_limit": 100000}'::jsonb WHERE id = 1`);
    await ensureRootUser(db, "/nonexistent", silentLogger(), { DRAGONFLY_INITIAL_ROOT_PASSWORD: "root-pass-123" });
    const jwt = new JwtService(await loadSigningKey(db), { realm: "Dragonfly", timeoutMs: 3_600_000, maxRefreshMs: 3_600_000 });
    runner = newRunner();
    // Cancels reach whichever runner this manager has at the time.
    app = await buildManagerApp({ db, jwt, onJobCreated: () => runner.wake(), onJobCanceled: (id) => runner.cancel(id), jobSecrets: secrets });
    runner.start();
    rootToken = (await app.inject({ method: "POST", url: "/api/v1/users/signin", payload: { name: "root", password: "root-pass-123" } })).json<{ token: string }>().token;
    pat = (
      await app.inject({ method: "POST", url: "/api/v1/personal-access-tokens", headers: { authorization: `Bearer ${rootToken}` }, payload: { name: "harbor", scopes: ["job"], expired_at: new Date(Date.now() + 3_600_000).toISOString() } })
    ).json<{ token: string }>().token;
  });

  afterAll(async () => {
    await runner?.stop();
    await app?.close();
    await scheduler?.handle.close();
    await daemon?.handle.close();
    registry?.server.close();
    await cleanup?.();
  });

  it("preheats a file on loopback to SUCCESS, Harbor-shaped, and forgets its credentials", async () => {
    const url = "http://127.0.0.1:9/files/blob.bin?X-Amz-Signature=abc";
    const id = await createJob({
      type: "preheat",
      args: { type: "file", url, tag: "", filtered_query_params: "", headers: { Authorization: "Bearer origin-secret", "X-Trace": "t1" }, scope: "single_seed_peer", concurrent_count: 0, timeout: 0 },
      scheduler_cluster_ids: null,
    });
    const job = await waitJob(id);
    expect(job.state).toBe("SUCCESS");
    const result = job.result.job_states[0]?.results[0] as { success_tasks: Array<{ url: string; hostname: string; ip: string }>; failure_tasks: unknown[]; scheduler_cluster_id: number };
    expect(result.success_tasks).toEqual([{ url, hostname: "seed-1", ip: "127.0.0.1" }]);
    expect(result.failure_tasks).toEqual([]);
    expect(result.scheduler_cluster_id).toBe(1);
    const sent = scheduler.preheats.find((p) => p.url === url) as PreheatFileRequest;
    expect(sent.scope).toBe("single_seed_peer");
    expect(sent.header).toEqual({ Authorization: "Bearer origin-secret", "X-Trace": "t1" });
    expect(sent.filteredQueryParams).toContain("X-Amz-Signature");
    // The task id the seed peer will compute is the one dfget computes for the same URL.
    expect(taskIdFromUrl({ url: sent.url, filteredQueryParams: sent.filteredQueryParams })).toBe(taskIdFromUrl({ url: "http://127.0.0.1:9/files/blob.bin?X-Amz-Signature=zzz", filteredQueryParams: sent.filteredQueryParams }));
    const [stored] = await db.query<{ args: { headers: Record<string, string> } }>("SELECT args FROM jobs WHERE id = $1", [id]);
    expect(stored?.args.headers).toEqual({ "X-Trace": "t1" });
  });

  const objectStorage = { endpoint: "http://127.0.0.1:9", region: "us-east-1", access_key_id: "AKIDREADER", access_key_secret: "s3-secret-never-stored", session_token: "session-never-stored" };

  it("preheats an s3:// object with Dragonfly's object_storage args: the scheduler gets the secrets, the database and the API never do", async () => {
    const url = "s3://models/llama/weights%20v1.bin";
    const r = await app.inject({ method: "POST", url: "/oapi/v1/jobs", headers: { authorization: `Bearer ${pat}` }, payload: { type: "preheat", args: { type: "file", url, object_storage: objectStorage } } });
    expect(r.statusCode, r.body).toBe(200);
    const created = r.json<{ id: number; args: { object_storage: object } }>();
    expect(created.args.object_storage).toEqual({ ...objectStorage, access_key_secret: "[redacted]", session_token: "[redacted]" });
    // Leased to the manager holding the secrets from the start: no other manager claims it.
    const [row] = await db.query<{ args: string; lease_owner: string | null }>("SELECT args::text AS args, lease_owner FROM jobs WHERE id = $1", [created.id]);
    expect(row?.args).not.toContain("never-stored");
    expect(row?.lease_owner).toBe(secrets.owner);
    const job = await waitJob(created.id);
    expect(job.state, JSON.stringify(job.result)).toBe("SUCCESS");
    const sent = scheduler.preheats.find((p) => p.url === url) as PreheatFileRequest;
    expect(sent.objectStorage).toMatchObject({ endpoint: objectStorage.endpoint, region: "us-east-1", accessKeyId: "AKIDREADER", accessKeySecret: "s3-secret-never-stored", sessionToken: "session-never-stored" });
    const [after] = await db.query<{ args: string; result: string }>("SELECT args::text AS args, result::text AS result FROM jobs WHERE id = $1", [created.id]);
    expect(after?.args).not.toContain("never-stored");
    expect(after?.result).not.toContain("never-stored");
    const got = await app.inject({ method: "GET", url: `/oapi/v1/jobs/${created.id}`, headers: { authorization: `Bearer ${pat}` } });
    expect(got.body).not.toContain("never-stored");
    expect(got.json<{ args: { object_storage: object } }>().args.object_storage).toEqual(created.args.object_storage);
    expect(secrets.waiting()).not.toContain(created.id);
  });

  it("fails an s3:// preheat whose secrets went with the manager that accepted it, without dispatching it", async () => {
    await runner.stop();
    const url = "s3://models/orphaned.bin";
    const id = await createJob({ type: "preheat", args: { type: "file", url, object_storage: objectStorage } });
    expect(secrets.waiting()).toContain(id);
    // The accepting manager died (its lease ran out); another manager, without the secrets, claims the job.
    await db.query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = $1", [id]);
    runner = newRunner(allowLoopback, new JobSecrets(undefined, 3000));
    runner.start();
    const job = await waitJob(id);
    expect(job.state).toBe("FAILURE");
    expect(job.result.job_states[0]?.error).toMatch(/object storage credentials .* create the job again/);
    expect(scheduler.preheats.some((p) => p.url === url)).toBe(false);
    await runner.stop();
    secrets.drop(id);
    runner = newRunner();
    runner.start();
  });

  it("preheats an image through the registry token flow and the platform's manifest", async () => {
    const id = await createJob({
      type: "preheat",
      args: { type: "image", url: `http://127.0.0.1:${registry.port}/v2/library/app/manifests/latest`, username: "alice", password: "s3cret", platform: "linux/arm64", timeout: 0 },
      scheduler_cluster_ids: [1],
    });
    const job = await waitJob(id);
    expect(job.state, JSON.stringify(job.result)).toBe("SUCCESS");
    const urls = (job.result.job_states[0]?.results[0] as { success_tasks: Array<{ url: string }> }).success_tasks.map((t) => t.url).sort();
    const base = `http://127.0.0.1:${registry.port}/v2/library/app/blobs/`;
    expect(urls).toEqual([`${base}${sha("config-arm64")}`, `${base}${sha("layer-b1")}`].sort());
    const blobPreheat = scheduler.preheats.find((p) => p.url === `${base}${sha("layer-b1")}`) as PreheatFileRequest;
    expect(blobPreheat.header.Authorization).toBe("Bearer tok-123");
    const [stored] = await db.query<{ args: { password: string } }>("SELECT args FROM jobs WHERE id = $1", [id]);
    expect(stored?.args.password).toBe("");
  });

  (REGISTRY_BIN ? it : it.skip)(REGISTRY_BIN ? "preheats an image pushed to Debian's docker-registry, Harbor-shaped" : REGISTRY_SKIP, async () => {
    const dir = mkdtempSync(join(tmpdir(), "manager-registry-"));
    const real = await startRealRegistry(dir);
    try {
      const { blobs } = await pushImage(real.port, "test/app", "v1");
      const id = await createJob({
        type: "preheat",
        args: { type: "image", url: `http://127.0.0.1:${real.port}/v2/test/app/manifests/v1`, tag: "", filtered_query_params: "", headers: {}, scope: "single_seed_peer", concurrent_count: 0, timeout: 0, platform: "linux/arm64" },
        scheduler_cluster_ids: null,
      });
      const job = await waitJob(id);
      expect(job.state, JSON.stringify(job.result)).toBe("SUCCESS");
      const urls = (job.result.job_states[0]?.results[0] as { success_tasks: Array<{ url: string }> }).success_tasks.map((t) => t.url);
      expect(urls.sort()).toEqual((blobs.arm64 ?? []).map((d) => `http://127.0.0.1:${real.port}/v2/test/app/blobs/${d}`).sort());
      // The blob URLs are real: the registry serves them.
      for (const u of urls) {
        const r = await request(u);
        await r.body.dump();
        expect(r.statusCode).toBe(200);
      }
    } finally {
      await real.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("fails a preheat whose URL the SSRF policy refuses, and one a scheduler rejects", async () => {
    await runner.stop();
    runner = newRunner(new SsrfPolicy());
    runner.start();
    const id = await createJob({ type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/secret" } });
    const job = await waitJob(id);
    expect(job.state).toBe("FAILURE");
    const failures = (job.result.job_states[0]?.results[0] as { failure_tasks: Array<{ description: string }> }).failure_tasks;
    expect(failures[0]?.description).toMatch(/SSRF/);
    expect(job.result.job_states[0]?.error).toMatch(/SSRF/);
    const meta = await waitJob(await createJob({ type: "preheat", args: { type: "file", url: "http://169.254.169.254/latest/meta-data/" } }));
    expect(meta.state).toBe("FAILURE");
    // Image manifests are fetched by the manager itself: refused before any connection.
    const img = await waitJob(await createJob({ type: "preheat", args: { type: "image", url: `http://127.0.0.1:${registry.port}/v2/library/app/manifests/latest` } }));
    expect(img.state).toBe("FAILURE");
    expect(img.result.job_states[0]?.error).toMatch(/SSRF/);
    await runner.stop();
    runner = newRunner();
    runner.start();
    const broken = await waitJob(await createJob({ type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/broken" } }));
    expect(broken.state).toBe("FAILURE");
    expect(broken.result.job_states[0]?.error).toContain("no seed peer");
  });

  it("runs jobs left by a manager that stopped or died", async () => {
    await runner.stop();
    // Created while no runner runs, and one claimed by a manager whose lease ran out.
    const waiting = await createJob({ type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/after-restart" } });
    const orphan = await createJob({ type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/orphan" } });
    await db.query("UPDATE jobs SET lease_owner = 'manager-dead', lease_until = now() - interval '1 second' WHERE id = $1", [orphan]);
    expect((await db.query<{ state: string }>("SELECT state FROM jobs WHERE id = $1", [waiting]))[0]?.state).toBe("PENDING");
    runner = newRunner();
    runner.start();
    expect((await waitJob(waiting)).state).toBe("SUCCESS");
    expect((await waitJob(orphan)).state).toBe("SUCCESS");
  });

  it("gets and deletes tasks on peers and syncs peers from the scheduler", async () => {
    const url = "http://127.0.0.1:9/cached.bin";
    const taskId = taskIdFromUrl({ url, filteredQueryParams: [] });
    daemon.tasks.add(taskId);
    scheduler.hosts = [
      Host.fromPartial({ id: "127.0.0.1-peer-a", type: 0, hostname: "peer-a", ip: "127.0.0.1", port: daemon.handle.port, downloadPort: 4001, os: "linux", platform: "debian", platformVersion: "12", kernelVersion: "6", schedulerClusterId: 1, proxyPort: 4002 }),
    ];
    const got = await waitJob(await createJob({ type: "get_task", args: { url, filtered_query_params: "" }, scheduler_cluster_ids: [1] }));
    expect(got.state).toBe("SUCCESS");
    expect((got.result.job_states[0]?.results[0] as { peers: Array<{ hostname: string; IsFinished: boolean }> }).peers).toMatchObject([{ hostname: "peer-a", IsFinished: true }]);
    const deleted = await waitJob(await createJob({ type: "delete_task", args: { task_id: taskId }, scheduler_cluster_ids: [1] }));
    expect(deleted.state).toBe("SUCCESS");
    expect((deleted.result.job_states[0]?.results[0] as { success_tasks: Array<{ hostname: string }> }).success_tasks).toMatchObject([{ hostname: "peer-a" }]);
    expect(daemon.tasks.has(taskId)).toBe(false);
    const synced = await waitJob(await createJob({ type: "sync_peers", scheduler_cluster_ids: [1] }));
    expect(synced.state).toBe("SUCCESS");
    const peers = await db.query<{ host_name: string; state: string; proxy_port: number }>("SELECT host_name, state, proxy_port FROM peers WHERE scheduler_cluster_id = 1");
    expect(peers).toEqual([{ host_name: "peer-a", state: "active", proxy_port: 4002 }]);
    scheduler.hosts = [];
    expect((await waitJob(await createJob({ type: "sync_peers", scheduler_cluster_ids: [1] }))).state).toBe("SUCCESS");
    expect((await db.query<{ state: string }>("SELECT state FROM peers WHERE host_name = 'peer-a'"))[0]?.state).toBe("inactive");
  });

  it("sends Harbor's cluster-less preheat only to clusters with a preheat scheduler", async () => {
    await db.query("INSERT INTO scheduler_clusters (tenant_id, name) VALUES (1, 'idle')");
    const r = await app.inject({ method: "POST", url: "/oapi/v1/jobs", headers: { authorization: `Bearer ${pat}` }, payload: { type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/any" }, scheduler_cluster_ids: null } });
    expect(r.json<{ scheduler_clusters: Array<{ id: number }> }>().scheduler_clusters.map((c) => c.id)).toEqual([1]);
    expect((await waitJob(r.json<{ id: number }>().id)).state).toBe("SUCCESS");
  });

  const asPat = (method: "POST" | "GET", url: string, token = pat) => app.inject({ method, url, headers: { authorization: `Bearer ${token}` } });
  type JobBody = { id: number; state: string; retry_of: number | null; bio: string; args: { urls: string[] }; scheduler_clusters: Array<{ id: number }>; result: { canceled?: boolean; job_states: Array<{ state: string; error: string }> } };
  /** Waits until the scheduler was asked to preheat `url` `n` times, and has been polled for it since. */
  const waitRunning = async (url: string, n: number) => {
    await expect.poll(() => scheduler.preheats.filter((p) => p.url === url).length, { timeout: 30_000 }).toBe(n);
    const polled = scheduler.stats.filter((u) => u === url).length;
    await expect.poll(() => scheduler.stats.filter((u) => u === url).length, { timeout: 30_000 }).toBeGreaterThan(polled);
  };

  it("cancels a running preheat: FAILURE with job.failed, and its runner starts nothing more for it", async () => {
    const [hook] = await db.query<{ id: number }>("INSERT INTO webhooks (tenant_id, name, url, event_types, secret) VALUES (1, 'job-events', 'http://192.0.2.1/hook', '[\"job.created\",\"job.failed\"]', 'hook-secret-1') RETURNING id");
    // One URL at a time: the first never finishes, so the second is what a canceled run must not start.
    const [first, second] = ["http://127.0.0.1:9/stall/a.bin", "http://127.0.0.1:9/stall/b.bin"];
    const id = await createJob({ type: "preheat", bio: "stalls", args: { type: "file", urls: [first, second], concurrent_task_count: 1 }, scheduler_cluster_ids: [1] });
    await waitRunning(first, 1);

    const r = await asPat("POST", `/oapi/v1/jobs/${id}/cancel`);
    expect(r.statusCode, r.body).toBe(200);
    const canceled = r.json<JobBody>();
    expect(canceled.state).toBe("FAILURE");
    expect(canceled.result.canceled).toBe(true);
    expect(canceled.result.job_states).toEqual([expect.objectContaining({ state: "FAILURE", error: "job canceled by root" })]);
    // The run ends (stop waits for it; an uncanceled one would poll StatFile until the job's timeout) without starting the second URL.
    await runner.stop();
    expect(scheduler.preheats.filter((p) => p.url.includes("/stall/")).map((p) => p.url)).toEqual([first]);
    runner = newRunner();
    runner.start();
    // The runner wrote nothing over the cancel; the lease is gone.
    const [row] = await db.query<{ state: string; result: { canceled?: boolean }; lease_owner: string | null }>("SELECT state, result, lease_owner FROM jobs WHERE id = $1", [id]);
    expect(row).toEqual({ state: "FAILURE", result: expect.objectContaining({ canceled: true }) as unknown, lease_owner: null });
    const events = await db.query<{ event: string; body: string }>("SELECT event, body FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id", [hook?.id]);
    const ofJob = events.filter((e) => (JSON.parse(e.body) as { job: { id: number } }).job.id === id);
    expect(ofJob.map((e) => e.event)).toEqual(["job.created", "job.failed"]);
    expect((JSON.parse(ofJob[1]?.body ?? "{}") as { job: { state: string; result: { canceled: boolean } } }).job).toMatchObject({ state: "FAILURE", result: { canceled: true } });

    // Ended: neither canceled again nor changed.
    const again = await asPat("POST", `/oapi/v1/jobs/${id}/cancel`);
    expect(again.statusCode).toBe(409);
    expect(again.json<{ message: string }>().message).toBe(`job ${id} is FAILURE: only a PENDING job can be canceled`);
    expect((await asPat("POST", "/oapi/v1/jobs/999999/cancel")).statusCode).toBe(404);
  });

  it("retries a failed job as a new one linked to it; a run on another manager stops when it is canceled there", async () => {
    const [old] = await db.query<{ id: number }>("SELECT id FROM jobs WHERE bio = 'stalls' ORDER BY id LIMIT 1");
    const oldId = old?.id ?? 0;
    // The runner of this manager is not running: another manager's (not told of cancels) claims the retry.
    await runner.stop();
    const other = newRunner(allowLoopback, new JobSecrets(undefined, 600));
    other.start();
    const r = await asPat("POST", `/oapi/v1/jobs/${oldId}/retry`);
    expect(r.statusCode, r.body).toBe(200);
    const retry = r.json<JobBody>();
    expect(retry).toMatchObject({ state: "PENDING", retry_of: oldId, bio: "stalls", scheduler_clusters: [{ id: 1 }] });
    expect(retry.id).toBeGreaterThan(oldId);
    expect(retry.args.urls).toEqual(["http://127.0.0.1:9/stall/a.bin", "http://127.0.0.1:9/stall/b.bin"]);
    await waitRunning("http://127.0.0.1:9/stall/a.bin", 2);
    // The old job is as it ended.
    expect((await asPat("GET", `/oapi/v1/jobs/${oldId}`)).json<JobBody>()).toMatchObject({ state: "FAILURE", retry_of: null });
    // Only a failed job is retried.
    const pending = await asPat("POST", `/oapi/v1/jobs/${retry.id}/retry`);
    expect(pending.statusCode).toBe(409);
    expect(pending.json<{ message: string }>().message).toBe(`job ${retry.id} is PENDING: only a FAILURE job can be retried`);

    expect((await asPat("POST", `/oapi/v1/jobs/${retry.id}/cancel`)).statusCode).toBe(200);
    // The other manager's run notices at its next lease renewal, and ends without the second URL.
    await other.stop();
    expect(scheduler.preheats.filter((p) => p.url.endsWith("/stall/b.bin"))).toEqual([]);
    expect((await db.query<{ state: string }>("SELECT state FROM jobs WHERE id = $1", [retry.id]))[0]?.state).toBe("FAILURE");
    runner = newRunner();
    runner.start();

    const succeeded = await waitJob(await createJob({ type: "sync_peers", scheduler_cluster_ids: [1] }));
    expect(succeeded.state).toBe("SUCCESS");
    const [done] = await db.query<{ id: number }>("SELECT id FROM jobs WHERE type = 'sync_peers' AND state = 'SUCCESS' ORDER BY id DESC LIMIT 1");
    expect((await asPat("POST", `/oapi/v1/jobs/${done?.id}/retry`)).statusCode).toBe(409);
  });

  it("refuses to retry a job whose credentials are gone, and lets no guest cancel or retry", async () => {
    const [c] = await db.query<{ id: number }>("INSERT INTO scheduler_clusters (tenant_id, name) VALUES (1, 'no-scheduler') RETURNING id");
    const r = await app.inject({ method: "POST", url: "/oapi/v1/jobs", headers: { authorization: `Bearer ${pat}` }, payload: { type: "preheat", args: { type: "file", url: "s3://models/w.bin", object_storage: objectStorage }, scheduler_cluster_ids: [c?.id] } });
    const failed = await waitJob(r.json<{ id: number }>().id);
    expect(failed.state).toBe("FAILURE");
    const refused = await asPat("POST", `/oapi/v1/jobs/${r.json<{ id: number }>().id}/retry`);
    expect(refused.statusCode).toBe(409);
    expect(refused.json<{ message: string }>().message).toMatch(/needs its object storage credentials, which were dropped when it ended; create the job again/);

    const root = { authorization: `Bearer ${rootToken}` };
    expect((await app.inject({ method: "POST", url: "/api/v1/users", headers: root, payload: { name: "watcher", password: "watcher-pass-1", email: "w@example.com" } })).statusCode).toBe(200);
    const guest = (await app.inject({ method: "POST", url: "/api/v1/users/signin", payload: { name: "watcher", password: "watcher-pass-1" } })).json<{ token: string }>().token;
    const waiting = await createJob({ type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/stall/guest.bin" }, scheduler_cluster_ids: [1] });
    for (const action of ["cancel", "retry"]) {
      const res = await app.inject({ method: "POST", url: `/api/v1/jobs/${waiting}/${action}`, headers: { authorization: `Bearer ${guest}` } });
      expect(res.statusCode, res.body).toBe(403);
      expect(res.json<{ message: string }>().message).toBe("permission denied: * jobs");
    }
    // Root, through the session API the console uses.
    const done = await app.inject({ method: "POST", url: `/api/v1/jobs/${waiting}/cancel`, headers: root });
    expect(done.json<JobBody>().state).toBe("FAILURE");
  });

  it("collects old audits, finished jobs and expired revocations", async () => {
    await db.query("UPDATE jobs SET updated_at = now() - interval '7 hours' WHERE state <> 'PENDING'");
    await db.query("INSERT INTO audits (actor_type, actor_name, event_type, operation, state, operated_at) VALUES ('USER', 'x', 'API', 'POST', 'SUCCESS', now() - interval '8 days')");
    await db.query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ('old', now() - interval '1 minute'), ('live', now() + interval '1 hour')");
    const r = await collectGarbage(db);
    expect(r.jobs).toBeGreaterThan(0);
    expect(r.audits).toBe(1);
    expect(r.revokedTokens).toBe(1);
    expect((await db.query<{ jti: string }>("SELECT jti FROM revoked_tokens")).map((x) => x.jti)).toEqual(["live"]);
    expect(await db.query("SELECT id FROM jobs WHERE state <> 'PENDING'")).toEqual([]);
  });

  it("fails a job for a cluster without an active scheduler", async () => {
    const [c] = await db.query<{ id: number }>("INSERT INTO scheduler_clusters (tenant_id, name) VALUES (1, 'empty') RETURNING id");
    const job = await waitJob(await createJob({ type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/x" }, scheduler_cluster_ids: [c?.id] }));
    expect(job.state).toBe("FAILURE");
    expect(job.result.job_states[0]?.error).toMatch(/no active scheduler/);
  });
});
