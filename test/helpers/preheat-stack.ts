// The manager + scheduler half of a preheat stack on loopback: a manager (PGlite, SSRF
// allowlist for 127.0.0.0/8, root password from the environment), a scheduler registered
// with it and active (its first KeepAlive landed), and a personal access token with the
// `job` scope as Harbor holds one. Seed peers and peers are the test's own.
import { silentLogger } from "../../src/common/logger.js";
import { startManager, type ManagerHandle } from "../../src/manager/server.js";
import { startScheduler, type SchedulerHandle } from "../../src/scheduler/server.js";
import { restClient, type RestCall } from "./manager-api.js";
import { tempDir } from "./swarm.js";
import { until } from "./until.js";

export interface PreheatStack {
  manager: ManagerHandle;
  scheduler: SchedulerHandle;
  json: RestCall;
  /** A job-scoped personal access token. */
  pat: string;
  close(): Promise<void>;
}

export async function startPreheatStack(name: string, rootPassword: string): Promise<PreheatStack> {
  const manager = await startManager(
    {
      server: { dataDir: tempDir(`${name}-manager`), logLevel: "silent", grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 } }, rest: { addr: "127.0.0.1:0" } },
      metrics: { enable: false },
      job: { preheat: { ssrf: { allowCIDRs: ["127.0.0.0/8"] } } },
    },
    { logger: silentLogger(), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: rootPassword } },
  );
  let scheduler: SchedulerHandle | undefined;
  try {
    const json = restClient(`http://127.0.0.1:${manager.restPort}`);
    const host = `${name}-scheduler`;
    scheduler = await startScheduler(
      {
        server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", advertisePort: 0, host, logLevel: "silent" },
        metrics: { enable: false },
        manager: { addr: `127.0.0.1:${manager.grpcPort}`, keepAlive: { interval: "1s" } },
      },
      { logger: silentLogger() },
    );
    await until(async () => (await manager.db.query<{ state: string }>("SELECT state FROM schedulers WHERE host_name = $1", [host]))[0]?.state === "active", "the scheduler active in the manager", 10_000);
    const signin = await json<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name: "root", password: rootPassword });
    if (signin.status !== 200) throw new Error(`sign-in as root failed: ${signin.status}`);
    const created = await json<{ token: string }>("POST", "/api/v1/personal-access-tokens", signin.body.token, { name: "harbor", scopes: ["job"], expired_at: new Date(Date.now() + 3_600_000).toISOString() });
    if (created.status !== 200) throw new Error(`creating a personal access token failed: ${created.status}`);
    const s = scheduler;
    return {
      manager,
      scheduler: s,
      json,
      pat: created.body.token,
      close: async () => {
        await s.close().catch(() => undefined);
        await manager.close().catch(() => undefined);
      },
    };
  } catch (e) {
    await scheduler?.close().catch(() => undefined);
    await manager.close().catch(() => undefined);
    throw e;
  }
}

/** A job as the open API returns it (the fields the preheat tests read). */
export interface PreheatJobView {
  id: number;
  state: string;
  args: Record<string, unknown>;
  result: { job_states: Array<{ error: string; results: Array<{ success_tasks: Array<{ url: string; hostname: string; ip: string }>; failure_tasks: Array<{ url: string; description: string }> }> }> };
}

/** Creates a file preheat job through the open API (Harbor's way) and waits until it is no longer PENDING. */
export async function preheatJob(stack: PreheatStack, args: Record<string, unknown>): Promise<PreheatJobView> {
  const created = await stack.json<PreheatJobView>("POST", "/oapi/v1/jobs", stack.pat, { type: "preheat", args: { type: "file", ...args }, scheduler_cluster_ids: null });
  if (created.status !== 200) throw new Error(`creating the job failed: ${created.status} ${JSON.stringify(created.body)}`);
  let job = created.body;
  await until(async () => {
    job = (await stack.json<PreheatJobView>("GET", `/oapi/v1/jobs/${created.body.id}`, stack.pat)).body;
    return job.state !== "PENDING";
  }, `preheat job ${created.body.id} finished`, 180_000);
  return job;
}

/** Whether `secret` appears in the job's row or in anything the jobs API returns. */
export async function secretShown(stack: PreheatStack, jobId: number, secret: string): Promise<boolean> {
  const [row] = await stack.manager.db.query<{ args: string; result: string }>("SELECT args::text AS args, result::text AS result FROM jobs WHERE id = $1", [jobId]);
  const listed = JSON.stringify((await stack.json<unknown>("GET", "/oapi/v1/jobs?per_page=100", stack.pat)).body);
  const one = JSON.stringify((await stack.json<unknown>("GET", `/oapi/v1/jobs/${jobId}`, stack.pat)).body);
  return [row?.args ?? "", row?.result ?? "", listed, one].some((t) => t.includes(secret));
}
