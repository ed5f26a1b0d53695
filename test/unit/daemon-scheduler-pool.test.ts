// The daemon's scheduler ring under failures (issue 26): a scheduler marked down leaves the
// ring and its tasks hash to the next one, as if it had never been configured; with every
// scheduler down all stay on it; a health check against real grpc.health.v1 servers on
// loopback takes a dead one off and brings a restarted one back, after beforeRejoin.
import { afterEach, describe, expect, it } from "vitest";
import { HashRing } from "../../src/common/hashring.js";
import { silentLogger } from "../../src/common/logger.js";
import { startGrpcServer, type GrpcServerHandle } from "../../src/common/grpc/server.js";
import { SchedulerPool } from "../../src/daemon/scheduler/pool.js";

const ADDRS = ["127.0.0.1:18002", "127.0.0.1:18012", "127.0.0.1:18022"];
/** Task ids whose first five characters spread over the ring. */
const TASKS = Array.from({ length: 300 }, (_, i) => `${i.toString(16).padStart(5, "0")}${"a".repeat(59)}`);

const pools: SchedulerPool[] = [];
const servers: GrpcServerHandle[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) p.close();
  for (const s of servers.splice(0)) await s.close();
});

function pool(addrs: string[]): SchedulerPool {
  const p = new SchedulerPool(addrs, undefined, silentLogger());
  pools.push(p);
  return p;
}

describe("SchedulerPool ring membership", () => {
  it("moves only a down scheduler's tasks, each to where a ring without it puts them", () => {
    const p = pool(ADDRS);
    const before = new Map(TASKS.map((t) => [t, p.forTask(t)?.addr]));
    const [dead, ...rest] = ADDRS as [string, ...string[]];
    expect([...before.values()].filter((a) => a === dead).length).toBeGreaterThan(0);
    p.markDown(dead, "connection refused");
    expect(p.members()).toEqual(rest);
    const without = new HashRing(rest);
    for (const t of TASKS) {
      const now = p.forTask(t)?.addr;
      if (before.get(t) === dead) expect(now).toBe(without.get(t.slice(0, 5)));
      else expect(now).toBe(before.get(t));
    }
  });

  it("skips the schedulers a download lost, and runs out after trying each once", () => {
    const p = pool(ADDRS);
    const t = TASKS[0] as string;
    const lost = new Set<string>();
    const seen: string[] = [];
    for (let s = p.forTask(t); s; s = p.failover(t, s.addr, new Error("gone"), lost)) seen.push(s.addr);
    expect([...seen].sort()).toEqual([...ADDRS].sort());
  });

  it("keeps every scheduler on the ring when all are down", () => {
    const p = pool(ADDRS);
    for (const a of ADDRS) p.markDown(a, "gone");
    expect(p.members()).toEqual(ADDRS);
    expect(p.forTask(TASKS[0] as string)).toBeDefined();
    expect(ADDRS.every((a) => p.isDown(a))).toBe(true);
  });

  it("forgets the health of a scheduler dropped from the list (dynconfig)", () => {
    const p = pool(ADDRS);
    p.markDown(ADDRS[0] as string, "gone");
    p.set(ADDRS.slice(1));
    p.set(ADDRS);
    expect(p.isDown(ADDRS[0] as string)).toBe(false);
    expect(p.members()).toEqual(ADDRS);
  });
});

describe("SchedulerPool health checks", () => {
  it("takes a scheduler that stops answering off the ring and brings it back once it serves again", async () => {
    const a = await startGrpcServer([], "127.0.0.1", 0, undefined, silentLogger());
    const b = await startGrpcServer([], "127.0.0.1", 0, undefined, silentLogger());
    servers.push(a, b);
    const addrA = `127.0.0.1:${a.port}`;
    const addrB = `127.0.0.1:${b.port}`;
    const p = pool([addrA, addrB]);
    const rejoined: string[] = [];
    p.beforeRejoin = (addr) => {
      rejoined.push(addr);
      return Promise.resolve(true);
    };
    await p.checkHealth();
    expect(p.members()).toEqual([addrA, addrB]);

    await a.close();
    servers.splice(servers.indexOf(a), 1);
    await p.checkHealth();
    expect(p.isDown(addrA)).toBe(true);
    expect(p.members()).toEqual([addrB]);
    expect(rejoined).toEqual([]);

    // Back on the same port: readied (beforeRejoin), then on the ring again.
    servers.push(await startGrpcServer([], "127.0.0.1", a.port, undefined, silentLogger()));
    await p.checkHealth();
    expect(rejoined).toEqual([addrA]);
    expect(p.members()).toEqual([addrA, addrB]);
  });

  it("keeps a scheduler down while beforeRejoin fails", async () => {
    const s = await startGrpcServer([], "127.0.0.1", 0, undefined, silentLogger());
    servers.push(s);
    const addr = `127.0.0.1:${s.port}`;
    const p = pool([addr, ADDRS[0] as string]);
    p.markDown(addr, "stream failed");
    p.beforeRejoin = () => Promise.resolve(false);
    await p.checkHealth();
    expect(p.isDown(addr)).toBe(true);
    p.beforeRejoin = () => Promise.resolve(true);
    await p.checkHealth();
    expect(p.isDown(addr)).toBe(false);
  });
});
