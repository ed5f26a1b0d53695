// The daemon's scheduler discovery (dynconfig) against a manager.v2 ListSchedulers that answers
// what each test sets: healthy schedulers of the first healthy scheduler's cluster are kept,
// unhealthy ones and other clusters are not, and a manager that fails or lists nobody healthy
// leaves the current list alone. (The real manager + scheduler path is in preheat-e2e.)
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGrpcServer, type GrpcServerHandle } from "../../src/common/grpc/server.js";
import { silentLogger } from "../../src/common/logger.js";
import { Dynconfig } from "../../src/daemon/scheduler/dynconfig.js";
import { SchedulerPool } from "../../src/daemon/scheduler/pool.js";
import { ManagerService, Scheduler, SourceType, type ListSchedulersRequest, type ListSchedulersResponse } from "../../src/gen/manager/v2/manager.js";

describe("daemon dynconfig", () => {
  let manager: GrpcServerHandle;
  const schedulers: GrpcServerHandle[] = [];
  let answer: { schedulers: Scheduler[] } | { code: status } = { schedulers: [] };
  const requests: ListSchedulersRequest[] = [];
  let deadPort = 0;

  const sched = (port: number, clusterId: number) => Scheduler.fromPartial({ id: port, hostname: `s-${port}`, ip: "127.0.0.1", port, state: "active", schedulerClusterId: clusterId });
  const addr = (h: GrpcServerHandle) => `127.0.0.1:${h.port}`;
  const newDynconfig = (pool: SchedulerPool, onChange?: (a: string[]) => Promise<unknown>) =>
    new Dynconfig(
      { managerAddr: `127.0.0.1:${manager.port}`, refreshIntervalMs: 50, hostname: "peer-1", ip: "127.0.0.1", idc: "idc-a", location: "", schedulerClusterId: 0, seedPeer: false, rpcTimeoutMs: 2000 },
      pool,
      silentLogger(),
      onChange,
    );

  beforeAll(async () => {
    manager = await startGrpcServer(
      [
        {
          definition: ManagerService,
          implementation: {
            listSchedulers: (call: ServerUnaryCall<ListSchedulersRequest, ListSchedulersResponse>, cb: sendUnaryData<ListSchedulersResponse>) => {
              requests.push(call.request);
              if ("code" in answer) cb({ code: answer.code, details: "manager says no" });
              else cb(null, answer);
            },
          },
        },
      ],
      "127.0.0.1",
      0,
    );
    // Schedulers only need their grpc.health.v1 (served by every startGrpcServer).
    for (let i = 0; i < 3; i++) schedulers.push(await startGrpcServer([], "127.0.0.1", 0));
    const dead = await startGrpcServer([], "127.0.0.1", 0);
    deadPort = dead.port;
    await dead.close();
  });

  afterAll(async () => {
    for (const s of schedulers) await s.close();
    await manager?.close();
  });

  it("keeps the healthy schedulers of the first healthy one's cluster and says who asks", async () => {
    const [a, b, c] = schedulers as [GrpcServerHandle, GrpcServerHandle, GrpcServerHandle];
    answer = { schedulers: [sched(deadPort, 1), sched(a.port, 2), sched(b.port, 3), sched(c.port, 2)] };
    const pool = new SchedulerPool([]);
    const dc = newDynconfig(pool);
    try {
      expect(await dc.refresh()).toBe(true);
      expect(pool.all().map(([x]) => x)).toEqual([addr(a), addr(c)]);
      expect(dc.clusterId).toBe(2);
      expect(requests.at(-1)).toMatchObject({ sourceType: SourceType.PEER_SOURCE, hostname: "peer-1", ip: "127.0.0.1", idc: "idc-a", schedulerClusterId: 0 });
      expect(await dc.refresh()).toBe(false);
    } finally {
      await dc.stop();
      pool.close();
    }
  });

  it("keeps the current list when the manager fails or lists nobody healthy", async () => {
    const [a] = schedulers as [GrpcServerHandle];
    const pool = new SchedulerPool([addr(a)]);
    const dc = newDynconfig(pool);
    try {
      answer = { code: status.UNAVAILABLE };
      expect(await dc.refresh()).toBe(false);
      answer = { schedulers: [sched(deadPort, 1)] };
      expect(await dc.refresh()).toBe(false);
      answer = { schedulers: [] };
      expect(await dc.refresh()).toBe(false);
      expect(pool.all().map(([x]) => x)).toEqual([addr(a)]);
    } finally {
      await dc.stop();
      pool.close();
    }
  });

  it("refreshes on its interval and reports changes, until stopped", async () => {
    const [a, b] = schedulers as [GrpcServerHandle, GrpcServerHandle];
    answer = { schedulers: [sched(a.port, 1)] };
    const pool = new SchedulerPool([]);
    const changes: string[][] = [];
    const dc = newDynconfig(pool, (list) => Promise.resolve(changes.push(list)));
    await dc.refresh();
    dc.start();
    try {
      answer = { schedulers: [sched(a.port, 1), sched(b.port, 1)] };
      await expect.poll(() => changes, { timeout: 5000, interval: 20 }).toEqual([[addr(a), addr(b)]]);
      answer = { schedulers: [sched(b.port, 1)] };
      await expect.poll(() => changes.length, { timeout: 5000, interval: 20 }).toBe(2);
      expect(pool.all().map(([x]) => x)).toEqual([addr(b)]);
    } finally {
      await dc.stop();
    }
    const asked = requests.length;
    answer = { schedulers: [sched(a.port, 1)] };
    await new Promise((r) => setTimeout(r, 200));
    expect(requests.length).toBe(asked);
    expect(pool.all().map(([x]) => x)).toEqual([addr(b)]);
    pool.close();
  });
});
