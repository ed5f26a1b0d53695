// Preheat through the real components on loopback: a manager (PGlite, SSRF allowlist for
// 127.0.0.0/8), a scheduler registered with it (UpdateScheduler + KeepAlive), one seed peer
// and one peer that finds the scheduler through the manager (dynconfig). Harbor-shaped jobs
// on the open API warm a file and an image's blobs on the seed peer; a pull of the same URL
// from the peer is then served by the swarm, not the origin, under the same task id.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { taskIdFromUrl } from "../../src/common/ids.js";
import { silentLogger } from "../../src/common/logger.js";
import { defaultPlatform } from "../../src/common/oci/resolver.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { DEFAULT_FILTERED_QUERY_PARAMS } from "../../src/manager/jobs/args.js";
import { startManager, type ManagerHandle } from "../../src/manager/server.js";
import { startScheduler, type SchedulerHandle } from "../../src/scheduler/server.js";
import { restClient, statTask, type RestCall } from "../helpers/manager-api.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { pushImage, REGISTRY_BIN, REGISTRY_SKIP, startRealRegistry, type PushedImage, type RealRegistry } from "../helpers/registry.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";

const ROOT_PASSWORD = "e2e-root-password-1";
const KEEPALIVE_MS = 1000;
const SIZE = 12 * 1024 * 1024 + 123;

interface JobView {
  id: number;
  state: string;
  created_at: string;
  updated_at: string;
  result: { job_states: Array<{ error: string; results: Array<{ success_tasks: Array<{ url: string; hostname: string; ip: string }>; failure_tasks: unknown[]; scheduler_cluster_id: number }> }> };
}

function startTestSchedulerWithManager(managerAddr: string, host: string): Promise<SchedulerHandle> {
  return startScheduler(
    {
      server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", advertisePort: 0, host, logLevel: "silent" },
      metrics: { enable: false },
      manager: { addr: managerAddr, keepAlive: { interval: `${KEEPALIVE_MS}ms` } },
    },
    { logger: silentLogger() },
  );
}

describe("preheat end to end: manager → scheduler → seed peer, then a peer pulls from the swarm", () => {
  let manager: ManagerHandle;
  let scheduler: SchedulerHandle;
  let seed: DaemonHandle;
  let peer: DaemonHandle;
  let origin: Origin;
  let pat: string;
  let managerAddr: string;
  let json: RestCall;
  const out = tempDir("preheat-e2e-out");

  /** Polls GET /oapi/v1/jobs/{id} as Harbor does until the job leaves PENDING. */
  const waitJob = async (id: number): Promise<JobView> => {
    let job: JobView | undefined;
    await expect
      .poll(
        async () => {
          job = (await json<JobView>("GET", `/oapi/v1/jobs/${id}`, pat)).body;
          return job.state;
        },
        { timeout: 60_000, interval: 200 },
      )
      .not.toBe("PENDING");
    return job as JobView;
  };

  beforeAll(async () => {
    origin = await startOrigin(makeContent(SIZE, 11));
    manager = await startManager(
      {
        server: { dataDir: tempDir("preheat-e2e-manager"), logLevel: "silent", grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 } }, rest: { addr: "127.0.0.1:0" } },
        metrics: { enable: false },
        job: { preheat: { ssrf: { allowCIDRs: ["127.0.0.0/8"] } } },
      },
      { logger: silentLogger(), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: ROOT_PASSWORD } },
    );
    json = restClient(`http://127.0.0.1:${manager.restPort}`);
    managerAddr = `127.0.0.1:${manager.grpcPort}`;
    scheduler = await startTestSchedulerWithManager(managerAddr, "sched-1");
    seed = await startTestDaemon({ name: "seed", schedulers: [`127.0.0.1:${scheduler.grpcPort}`], seed: true });
    // No scheduler configured: the peer asks the manager (ListSchedulers) for them.
    peer = await startTestDaemon({ name: "peer", schedulers: [], overrides: { manager: { addr: managerAddr }, dynconfig: { refreshInterval: "1s" } } });

    const signin = await json<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name: "root", password: ROOT_PASSWORD });
    expect(signin.status).toBe(200);
    const created = await json<{ token: string }>("POST", "/api/v1/personal-access-tokens", signin.body.token, { name: "harbor", scopes: ["job"], expired_at: new Date(Date.now() + 3_600_000).toISOString() });
    expect(created.status).toBe(200);
    pat = created.body.token;
  });

  afterAll(async () => {
    await peer?.close();
    await seed?.close();
    await scheduler?.close();
    await manager?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  it("registers the scheduler as active with the manager, and the peer finds it through ListSchedulers", async () => {
    const [row] = await manager.db.query<{ state: string; port: number; features: string[] }>("SELECT state, port, features FROM schedulers WHERE host_name = 'sched-1'");
    expect(row).toMatchObject({ state: "active", port: scheduler.grpcPort });
    expect(row?.features).toEqual(expect.arrayContaining(["schedule", "preheat"]));
    // At its start or at the next refresh, depending on when the scheduler's first KeepAlive landed.
    await expect.poll(() => peer.schedulers.all().map(([addr]) => addr), { timeout: 5000, interval: 50 }).toEqual([`127.0.0.1:${scheduler.grpcPort}`]);
    // The peer announced itself to the scheduler it discovered.
    await expect.poll(() => scheduler.resource.hosts.has(peer.hostId), { timeout: 5000, interval: 50 }).toBe(true);
  });

  it("a Harbor-shaped file preheat reaches SUCCESS, the seed peer holds the file, and the peer's pull comes from P2P", async () => {
    const url = origin.url();
    const created = await json<JobView>("POST", "/oapi/v1/jobs", pat, {
      type: "preheat",
      args: { type: "file", url, tag: "", filtered_query_params: "", headers: {}, scope: "single_seed_peer", concurrent_count: 0, timeout: 0 },
      scheduler_cluster_ids: null,
    });
    expect(created.status).toBe(200);
    expect(created.body.state).toBe("PENDING");
    const job = await waitJob(created.body.id);
    expect(job.state, JSON.stringify(job.result)).toBe("SUCCESS");
    const result = job.result.job_states[0]?.results[0];
    expect(result?.success_tasks).toEqual([{ url, hostname: "seed", ip: "127.0.0.1" }]);
    expect(result?.failure_tasks).toEqual([]);

    // The id the preheat path used (the manager's default filter) is the one the seed holds.
    const preheatTaskId = taskIdFromUrl({ url, filteredQueryParams: DEFAULT_FILTERED_QUERY_PARAMS });
    const held = await statTask(seed.uploadPort, preheatTaskId);
    expect(held).toMatchObject({ id: preheatTaskId, state: "Succeeded", contentLength: SIZE });
    expect(origin.bytesServed).toBeGreaterThanOrEqual(SIZE);

    const before = origin.bytesServed;
    const output = join(out, "file.bin");
    const pulled = await downloadVia(peer.socketPath, { url, outputPath: output });
    expect(pulled.taskId).toBe(preheatTaskId);
    expect(pulled.contentLength).toBe(SIZE);
    expect(sha256File(output)).toBe(origin.sha256);
    // Only the daemon's metadata probe (a 1-byte range) reached the origin.
    expect(origin.bytesServed - before).toBeLessThanOrEqual(8);
    expect((await statTask(peer.uploadPort, preheatTaskId)).state).toBe("Succeeded");
  });

  (REGISTRY_BIN ? it : it.skip)(REGISTRY_BIN ? "a Harbor-shaped image preheat from docker-registry leaves every blob of the platform on the seed peer" : REGISTRY_SKIP, async () => {
    const dir = tempDir("preheat-e2e-registry");
    let registry: RealRegistry | undefined;
    try {
      registry = await startRealRegistry(dir);
      const image: PushedImage = await pushImage(registry.port, "library/app", "v1", { layers: 2, layerBytes: 5 * 1024 * 1024 + 7 });
      const created = await json<JobView>("POST", "/oapi/v1/jobs", pat, {
        type: "preheat",
        args: {
          type: "image",
          url: image.manifestUrl,
          tag: "",
          filtered_query_params: "",
          // Harbor hands over its pull credentials; this registry does not check them.
          headers: { Authorization: `Basic ${Buffer.from("robot$harbor:secret").toString("base64")}` },
          scope: "single_seed_peer",
          concurrent_count: 0,
          timeout: 0,
        },
        scheduler_cluster_ids: null,
      });
      expect(created.status).toBe(200);
      const job = await waitJob(created.body.id);
      expect(job.state, JSON.stringify(job.result)).toBe("SUCCESS");
      // Harbor sends no platform: the manager's own platform is used, as in Dragonfly.
      const arch = defaultPlatform().split("/")[1] ?? "";
      const blobUrls = (image.blobs[arch] ?? []).map((d) => image.blobUrl(d));
      expect(blobUrls).toHaveLength(3);
      expect((job.result.job_states[0]?.results[0]?.success_tasks ?? []).map((t) => t.url).sort()).toEqual([...blobUrls].sort());
      for (const [i, blobUrl] of blobUrls.entries()) {
        const taskId = taskIdFromUrl({ url: blobUrl, filteredQueryParams: DEFAULT_FILTERED_QUERY_PARAMS });
        const digest = (image.blobs[arch] ?? [])[i] ?? "";
        const held = await statTask(seed.uploadPort, taskId);
        expect(held).toMatchObject({ id: taskId, state: "Succeeded", contentLength: image.contents.get(digest)?.length });
      }
      // A pull of a layer from the peer gets the preheated task and the right bytes.
      const layerDigest = (image.blobs[arch] ?? [])[1] ?? "";
      const output = join(out, "layer");
      const pulled = await downloadVia(peer.socketPath, { url: image.blobUrl(layerDigest), outputPath: output });
      expect(pulled.taskId).toBe(taskIdFromUrl({ url: image.blobUrl(layerDigest), filteredQueryParams: DEFAULT_FILTERED_QUERY_PARAMS }));
      expect(`sha256:${sha256File(output)}`).toBe(layerDigest);
      // The preheat's credentials are gone from the stored job.
      const [stored] = await manager.db.query<{ args: { headers: Record<string, string> } }>("SELECT args FROM jobs WHERE id = $1", [created.body.id]);
      expect(stored?.args.headers).toEqual({});
    } finally {
      await registry?.stop();
    }
  });

  it("a second scheduler joins the peer's list while active, and goes inactive within 3 keepalive intervals once stopped", async () => {
    const second = await startTestSchedulerWithManager(managerAddr, "sched-2");
    let stopped = false;
    try {
      const state = async () => (await manager.db.query<{ state: string }>("SELECT state FROM schedulers WHERE host_name = 'sched-2'"))[0]?.state;
      // UpdateScheduler registers it; its first KeepAlive message makes it active.
      await expect.poll(state, { timeout: 3 * KEEPALIVE_MS, interval: 50 }).toBe("active");
      const both = [`127.0.0.1:${scheduler.grpcPort}`, `127.0.0.1:${second.grpcPort}`].sort();
      await expect.poll(() => peer.schedulers.all().map(([a]) => a).sort(), { timeout: 10_000, interval: 100 }).toEqual(both);
      // The peer announced itself to the new scheduler when it appeared.
      await expect.poll(() => second.resource.hosts.has(peer.hostId), { timeout: 5000, interval: 100 }).toBe(true);

      await second.close();
      stopped = true;
      await expect.poll(state, { timeout: 3 * KEEPALIVE_MS, interval: 100 }).toBe("inactive");
      // The manager stops listing it and the peer drops it on its next refresh.
      await expect.poll(() => peer.schedulers.all().map(([a]) => a), { timeout: 10_000, interval: 100 }).toEqual([`127.0.0.1:${scheduler.grpcPort}`]);
    } finally {
      if (!stopped) await second.close();
    }
  });
});
