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

/** A scheduler that "downloads" instantly: StatFile reports a URL finished once PreheatFile saw it. */
class FakeScheduler {
  readonly preheats: PreheatFileRequest[] = [];
  readonly done = new Set<string>();
  handle!: GrpcServerHandle;
  async start() {
    const impl = {
      preheatFile: (call: ServerUnaryCall<PreheatFileRequest, object>, cb: sendUnaryData<object>) => {
        this.preheats.push(call.request);
        if (call.request.url.includes("/broken")) return cb({ code: status.FAILED_PRECONDITION, details: "no seed peer" });
        this.done.add(call.request.url);
        cb(null, {});
      },
      statFile: (call: ServerUnaryCall<StatFileRequest, StatFileResponse>, cb: sendUnaryData<StatFileResponse>) => {
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
    app = await buildManagerApp({ db, jwt, onJobCreated: () => runner.wake(), jobSecrets: secrets });
    runner.start();
    const token = (await app.inject({ method: "POST", url: "/api/v1/users/signin", payload: { name: "root", password: "root-pass-123" } })).json<{ token: string }>().token;
    pat = (
      await app.inject({ method: "POST", url: "/api/v1/personal-access-tokens", headers: { authorization: `Bearer ${token}` }, payload: { name: "harbor", scopes: ["job"], expired_at: new Date(Date.now() + 3_600_000).toISOString() } })
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
