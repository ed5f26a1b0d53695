// The command channel (issue 25) end to end: a real manager and scheduler (preheat-stack), two
// daemons that found the scheduler through the manager and hold the command stream, and an
// operator on the REST API. Each command round trips and really happens on the daemon (the
// task is gone from its store, GC removed what its policy says, the logger's level changed,
// the scheduler list was read again), a cluster-wide command reaches both daemons, an unknown
// or disconnected host is reported as such, and users without the permission are refused.
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger, silentLogger, type Logger } from "../../src/common/logger.js";
import { collectGarbage } from "../../src/manager/gc.js";
import { startManager } from "../../src/manager/server.js";
import { restClient } from "../helpers/manager-api.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { startPreheatStack, type PreheatStack } from "../helpers/preheat-stack.js";
import { cleanupTempDirs, downloadVia, startTestDaemon, startTestScheduler, tempDir, testDaemonConfig } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const ROOT_PASSWORD = "root-pass-commands";
const SIZE = 3 * 1024 * 1024 + 17;

interface HostResult {
  host_id: string;
  hostname: string;
  state: string;
  error: string;
  result: { tasks_removed?: number; bytes_freed?: number; previous_log_level?: string; schedulers?: string[]; schedulers_changed?: boolean };
}
interface CommandView {
  id: number;
  type: string;
  state: string;
  error: string;
  results: HostResult[];
}

describe("manager command channel", () => {
  let stack: PreheatStack;
  let origin: Origin;
  let root: string;
  const daemons: DaemonHandle[] = [];
  const loggers: Logger[] = [];
  let extraScheduler: SchedulerHandle | undefined;

  const send = (body: Record<string, unknown>, token = root) => stack.json<CommandView & { message?: string; field?: string }>("POST", "/api/v1/commands", token, body);
  /** Sends a command and waits until every host answered (or the deadline failed it). */
  const run = async (body: Record<string, unknown>): Promise<CommandView> => {
    const created = await send(body);
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    let view = created.body;
    await until(async () => {
      view = (await stack.json<CommandView>("GET", `/api/v1/commands/${created.body.id}`, root)).body;
      return view.state !== "PENDING";
    }, `command ${created.body.id} finished`, 30_000);
    return view;
  };
  const a = () => daemons[0] as DaemonHandle;
  const b = () => daemons[1] as DaemonHandle;

  beforeAll(async () => {
    origin = await startOrigin(makeContent(SIZE, 25));
    stack = await startPreheatStack("commands", ROOT_PASSWORD);
    const managerAddr = `127.0.0.1:${stack.manager.grpcPort}`;
    for (const name of ["cmd-a", "cmd-b"]) {
      // Loggers of their own, so a test sees the level a command set; the lines go nowhere.
      const log = createLogger({ component: "dfdaemon", level: "warn" }, new Writable({ write: (_c, _e, done) => done() }));
      loggers.push(log);
      // A 1-byte GC capacity: every finished task is over the high watermark, so a GC pass
      // removes them all (the periodic pass never runs in the test: 24 h).
      const config = testDaemonConfig({ name, schedulers: [], overrides: { manager: { addr: managerAddr }, dynconfig: { refreshInterval: "24h" }, gc: { interval: "24h", policy: { diskThreshold: "1" } } } });
      daemons.push(await startDaemon(config, log));
    }
    const signin = await stack.json<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name: "root", password: ROOT_PASSWORD });
    root = signin.body.token;
    await until(async () => (await stack.json<unknown[]>("GET", "/api/v1/commands/hosts", root)).body.length === 2, "both daemons on the command channel", 15_000);
  });

  afterAll(async () => {
    for (const d of daemons) await d.close().catch(() => undefined);
    await extraScheduler?.close();
    await stack?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  it("lists both daemons as connected, in the scheduler's cluster", async () => {
    const hosts = (await stack.json<Array<{ host_id: string; hostname: string; scheduler_cluster_ids: number[] }>>("GET", "/api/v1/commands/hosts", root)).body;
    expect(hosts.map((h) => h.host_id).sort()).toEqual([a().hostId, b().hostId].sort());
    for (const h of hosts) expect(h.scheduler_cluster_ids).toEqual([1]);
  });

  it("delete_task removes the task from the daemon's store, and a second delete says it is not there", async () => {
    const { taskId } = await downloadVia(a().socketPath, { url: `${origin.url()}?delete=1` });
    expect(a().storage.get(taskId)?.meta.state).toBe("succeeded");
    const done = await run({ type: "delete_task", host_id: a().hostId, args: { task_id: taskId } });
    expect(done.state, JSON.stringify(done)).toBe("SUCCESS");
    expect(done.results).toEqual([expect.objectContaining({ host_id: a().hostId, hostname: "cmd-a", state: "SUCCESS", error: "", result: { tasks_removed: 1, bytes_freed: SIZE } })]);
    expect(a().storage.get(taskId)).toBeUndefined();

    const again = await run({ type: "delete_task", host_id: a().hostId, args: { task_id: taskId } });
    expect(again.state).toBe("FAILURE");
    expect(again.results[0]?.error).toBe(`task ${taskId} is not in this daemon's storage`);
  });

  it("gc runs the daemon's GC now and reports what it freed", async () => {
    const first = await downloadVia(b().socketPath, { url: `${origin.url()}?gc=1` });
    const second = await downloadVia(b().socketPath, { url: `${origin.url()}?gc=2` });
    expect(b().storage.list().map((t) => t.id).sort()).toEqual([first.taskId, second.taskId].sort());
    const done = await run({ type: "gc", host_id: b().hostId });
    expect(done.state, JSON.stringify(done)).toBe("SUCCESS");
    expect(done.results[0]?.result).toEqual({ tasks_removed: 2, bytes_freed: 2 * SIZE });
    expect(b().storage.list()).toEqual([]);
  });

  it("a cluster-wide set_log_level reaches both daemons and changes their loggers", async () => {
    const done = await run({ type: "set_log_level", scheduler_cluster_id: 1, args: { level: "debug" } });
    expect(done.state, JSON.stringify(done)).toBe("SUCCESS");
    expect(done.results.map((r) => r.host_id).sort()).toEqual([a().hostId, b().hostId].sort());
    for (const r of done.results) expect(r).toMatchObject({ state: "SUCCESS", result: { previous_log_level: "warn" } });
    expect(loggers.map((l) => l.level)).toEqual(["debug", "debug"]);
  });

  it("refresh_config makes the daemon read its schedulers from the manager now", async () => {
    // A second scheduler joins the cluster; the daemons' own refresh is a day away.
    const host = "commands-scheduler-2";
    extraScheduler = await startTestScheduler({ server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", advertisePort: 0, host, logLevel: "silent" }, manager: { addr: `127.0.0.1:${stack.manager.grpcPort}`, keepAlive: { interval: "1s" } } });
    await until(async () => (await stack.manager.db.query<{ state: string }>("SELECT state FROM schedulers WHERE host_name = $1", [host]))[0]?.state === "active", "the second scheduler active", 10_000);
    const added = `127.0.0.1:${extraScheduler.grpcPort}`;
    expect(a().schedulers.all().map(([x]) => x)).not.toContain(added);
    const done = await run({ type: "refresh_config", host_id: a().hostId });
    expect(done.state, JSON.stringify(done)).toBe("SUCCESS");
    expect(done.results[0]?.result.schedulers_changed, JSON.stringify(done)).toBe(true);
    expect(done.results[0]?.result.schedulers).toContain(added);
    expect(a().schedulers.all().map(([x]) => x)).toContain(added);
  });

  it("reports an unknown host, and a cluster without connected daemons, instead of waiting", async () => {
    const unknown = await send({ type: "gc", host_id: "10.9.9.9-nobody" });
    expect(unknown.status).toBe(200);
    expect(unknown.body.state).toBe("FAILURE");
    expect(unknown.body.results).toEqual([expect.objectContaining({ host_id: "10.9.9.9-nobody", state: "FAILURE" })]);
    expect(unknown.body.results[0]?.error).toContain("is not connected to this manager's command channel");

    const cluster = await stack.json<{ id: number }>("POST", "/api/v1/scheduler-clusters", root, { name: "empty", config: {}, client_config: {}, seed_client_config: {} });
    expect(cluster.status).toBe(200);
    const empty = await send({ type: "gc", scheduler_cluster_id: cluster.body.id });
    expect(empty.body).toMatchObject({ state: "FAILURE", results: [], error: `no daemon of scheduler cluster ${cluster.body.id} is connected to this manager's command channel` });
    expect((await send({ type: "gc", scheduler_cluster_id: 999_999 })).status).toBe(404);
    const both = await send({ type: "gc", host_id: a().hostId, scheduler_cluster_id: 1 });
    expect(both.status).toBe(400);
    expect(both.body.field).toBe("body.host_id");
  });

  it("refuses users without the commands permission, lets an operator role send, and audits both", async () => {
    expect((await send({ type: "gc", host_id: a().hostId }, "")).status).toBe(401);
    const mk = async (name: string, roles?: string[]) => {
      const created = await stack.json("POST", "/api/v1/users", root, { name, password: `${name}-password`, email: `${name}@example.com`, ...(roles ? { roles } : {}) });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      return (await stack.json<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name, password: `${name}-password` })).body.token;
    };
    const guest = await mk("cmdguest");
    const refused = await send({ type: "set_log_level", host_id: a().hostId, args: { level: "trace" } }, guest);
    expect(refused.status).toBe(403);
    expect(refused.body.message).toBe("permission denied: * commands");
    expect(loggers[0]?.level).toBe("debug");

    expect((await stack.json("POST", "/api/v1/roles", root, { role: "operator", permissions: [{ object: "commands", action: "*" }] })).status).toBe(200);
    const operator = await mk("cmdoper", ["operator"]);
    const sent = await send({ type: "set_log_level", host_id: a().hostId, args: { level: "info" } }, operator);
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    await until(async () => (await stack.json<CommandView>("GET", `/api/v1/commands/${sent.body.id}`, operator)).body.state === "SUCCESS", "the operator's command done", 30_000);
    expect(loggers[0]?.level).toBe("info");

    const audits = await stack.manager.db.query<{ actor_name: string; state: string; status_code: number }>("SELECT actor_name, state, status_code FROM audits WHERE path = '/api/v1/commands' AND actor_name IN ('cmdguest', 'cmdoper') ORDER BY id");
    expect(audits).toEqual([
      { actor_name: "cmdguest", state: "FAILURE", status_code: 403 },
      { actor_name: "cmdoper", state: "SUCCESS", status_code: 200 },
    ]);
  });

  it("reports a daemon that went away as not connected", async () => {
    const gone = b().hostId;
    await b().close();
    await until(async () => (await stack.json<Array<{ host_id: string }>>("GET", "/api/v1/commands/hosts", root)).body.every((h) => h.host_id !== gone), "the closed daemon off the channel", 10_000);
    const res = await send({ type: "gc", host_id: gone });
    expect(res.body.state).toBe("FAILURE");
    expect(res.body.results[0]?.error).toContain("is not connected");
    // Only daemon a is left in cluster 1.
    const done = await run({ type: "refresh_config", scheduler_cluster_id: 1 });
    expect(done.results.map((r) => r.host_id)).toEqual([a().hostId]);
  });

  it("forgets finished commands and their results after the job TTL, as the manager's GC does jobs", async () => {
    const db = stack.manager.db;
    const [before] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM host_commands");
    // The default job TTL is 6 h: all but one command are made older than that.
    const [kept] = await db.query<{ id: number }>("SELECT max(id) AS id FROM host_commands");
    await db.query("UPDATE host_commands SET updated_at = now() - interval '7 hours' WHERE id <> $1", [kept?.id]);
    const r = await collectGarbage(db);
    expect(r.hostCommands).toBe((before?.n ?? 0) - 1);
    expect(await db.query("SELECT id FROM host_commands")).toEqual([{ id: kept?.id }]);
    expect(await db.query<{ command_id: number }>("SELECT DISTINCT command_id FROM host_command_results")).toEqual([{ command_id: kept?.id }]);
  });
});

describe("command channel before the daemon knows its cluster", () => {
  it("joins with no cluster, and rejoins in its cluster once refresh_config found the schedulers", async () => {
    const password = "root-pass-rehello";
    const manager = await startManager(
      { server: { dataDir: tempDir("commands-rehello"), logLevel: "silent", grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 } }, rest: { addr: "127.0.0.1:0" } }, metrics: { enable: false } },
      { logger: silentLogger(), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: password } },
    );
    const managerAddr = `127.0.0.1:${manager.grpcPort}`;
    let daemon: DaemonHandle | undefined;
    let scheduler: SchedulerHandle | undefined;
    try {
      const json = restClient(`http://127.0.0.1:${manager.restPort}`);
      const token = (await json<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name: "root", password })).body.token;
      const hosts = async () => (await json<Array<{ host_id: string; scheduler_cluster_ids: number[] }>>("GET", "/api/v1/commands/hosts", token)).body;
      // No scheduler registered yet: dynconfig finds none, so the Hello names no cluster.
      daemon = await startTestDaemon({ name: "cmd-late", schedulers: [], overrides: { manager: { addr: managerAddr }, dynconfig: { refreshInterval: "24h" } } });
      const hostId = daemon.hostId;
      await until(async () => (await hosts()).length === 1, "the daemon on the channel");
      expect(await hosts()).toEqual([expect.objectContaining({ host_id: hostId, scheduler_cluster_ids: [] })]);
      scheduler = await startTestScheduler({ server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", advertisePort: 0, host: "rehello-scheduler", logLevel: "silent" }, manager: { addr: managerAddr, keepAlive: { interval: "1s" } } });
      await until(async () => (await manager.db.query<{ state: string }>("SELECT state FROM schedulers WHERE host_name = 'rehello-scheduler'"))[0]?.state === "active", "the scheduler active");
      const sent = await json<CommandView>("POST", "/api/v1/commands", token, { type: "refresh_config", host_id: hostId });
      expect(sent.status).toBe(200);
      let view = sent.body;
      await until(async () => (view = (await json<CommandView>("GET", `/api/v1/commands/${sent.body.id}`, token)).body).state !== "PENDING", "refresh_config done", 30_000);
      expect(view.state, JSON.stringify(view)).toBe("SUCCESS");
      // After answering, the daemon reopened its stream with a Hello naming cluster 1.
      await until(async () => (await hosts()).some((h) => h.scheduler_cluster_ids.includes(1)), "the daemon in cluster 1");
      const cluster = await json<CommandView>("POST", "/api/v1/commands", token, { type: "gc", scheduler_cluster_id: 1 });
      expect(cluster.body.results.map((r) => r.host_id)).toEqual([hostId]);
    } finally {
      await daemon?.close();
      await scheduler?.close();
      await manager.close();
    }
  });
});
