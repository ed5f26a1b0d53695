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
