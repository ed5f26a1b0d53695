// Who may do what on a manager and a scheduler running mTLS (issue #21): for each RPC that
// changes who serves or steers the swarm, a client without a certificate (or with one of
// another CA) is refused at the handshake, a certificate of the wrong role gets
// PERMISSION_DENIED, and the right role gets through. A host announcing itself as a seed peer
// with a peer certificate is refused and never enters the seed ring, so it gets no children.
// Without TLS the same calls are open, as in a plaintext Dragonfly cluster.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata, status, type ChannelCredentials } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { channelCredentials, loadTls, type TlsFiles } from "../../src/common/grpc/tls.js";
import { createLogger, silentLogger } from "../../src/common/logger.js";
import { createRegistry } from "../../src/common/metrics.js";
import { ManagerClient, SourceType } from "../../src/gen/manager/v2/manager.js";
import { SchedulerClient } from "../../src/gen/scheduler/v2/scheduler.js";
import { startManager, type ManagerHandle } from "../../src/manager/server.js";
import { startScheduler, type SchedulerHandle } from "../../src/scheduler/server.js";
import { stackCertificates } from "../../src/up/pki.js";
import { codeOf, hostMsg, unaryCall } from "./scheduler-helpers.js";

const HOST_TYPE_SUPER = 1;
const work = mkdtempSync(join(tmpdir(), "mtls-authz-"));
let certs: Map<string, TlsFiles>;
let foreign: Map<string, TlsFiles>;
let manager: ManagerHandle;
let scheduler: SchedulerHandle;
let plainScheduler: SchedulerHandle;
const logLines: string[] = [];

beforeAll(async () => {
  certs = await stackCertificates(join(work, "pki"), [
    { name: "manager", role: "manager" },
    { name: "scheduler", role: "scheduler" },
    { name: "seed-1", role: "seed-peer" },
    { name: "peer-1", role: "peer" },
  ]);
  // Same roles, another CA: what an attacker can make for itself.
  foreign = await stackCertificates(join(work, "foreign"), [{ name: "seed-1", role: "seed-peer" }]);
  manager = await startManager(
    {
      server: { dataDir: join(work, "manager"), rest: { addr: "127.0.0.1:0" }, grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 }, tls: certs.get("manager") } },
      metrics: { enable: false },
    },
    { logger: silentLogger(), env: {} },
  );
  const logger = createLogger({ component: "scheduler" }, { write: (s: string) => logLines.push(s) });
  scheduler = await startScheduler(
    { server: { listenIP: "127.0.0.1", port: 0, tls: certs.get("scheduler") }, metrics: { enable: false }, seedPeer: { enable: true, healthCheckInterval: "0s" } },
    { logger, registry: createRegistry(false) },
  );
  plainScheduler = await startScheduler({ server: { listenIP: "127.0.0.1", port: 0 }, metrics: { enable: false }, seedPeer: { enable: true, healthCheckInterval: "0s" } }, { logger: silentLogger(), registry: createRegistry(false) });
}, 120_000);

afterAll(async () => {
  await scheduler?.close();
  await plainScheduler?.close();
  await manager?.close();
  rmSync(work, { recursive: true, force: true });
});

/** How a caller connects: its certificate (by name), none over TLS, another CA's, or plaintext. */
type Caller = "plaintext" | "tls-without-cert" | "foreign-ca" | "manager" | "scheduler" | "seed-1" | "peer-1";

function creds(caller: Caller, serverRole: "manager" | "scheduler"): ChannelCredentials {
  if (caller === "plaintext") return credentials.createInsecure();
  const ca = loadTls(certs.get("manager"), "ca")?.ca ?? null;
  // Trusts the cluster CA but presents nothing: the server must ask for and require a certificate.
  if (caller === "tls-without-cert") return credentials.createSsl(ca, null, null, { checkServerIdentity: () => undefined });
  const own = loadTls(caller === "foreign-ca" ? foreign.get("seed-1") : certs.get(caller), caller);
  // The foreign caller still trusts our server (it has our CA); only its own certificate is foreign.
  return channelCredentials(own && caller === "foreign-ca" ? { ...own, ca: ca ?? own.ca } : own, [serverRole]);
}

let seq = 0;
interface Rpc {
  name: string;
  server: "manager" | "scheduler";
  allowed: Caller;
  wrong: Caller;
  /** One call as `caller`; a fresh subject (host, seed peer) each time. */
  invoke(caller: Caller): Promise<unknown>;
}

function managerClient(caller: Caller) {
  return new ManagerClient(`127.0.0.1:${manager.grpcPort}`, creds(caller, "manager"));
}
function schedulerClient(caller: Caller, port = scheduler.grpcPort) {
  return new SchedulerClient(`127.0.0.1:${port}`, creds(caller, "scheduler"));
}

async function withClient<C extends { close(): void }, R>(c: C, fn: (c: C) => Promise<R>): Promise<R> {
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

const seedPeerRequest = (hostname: string) => ({ hostname, type: "super", ip: "127.0.0.1", port: 4000, downloadPort: 4005, seedPeerClusterId: 1 });

const rpcs: Rpc[] = [
  {
    name: "manager UpdateScheduler",
    server: "manager",
    allowed: "scheduler",
    wrong: "peer-1",
    invoke: (caller) =>
      withClient(managerClient(caller), (c) =>
        unaryCall(c.updateScheduler.bind(c), { sourceType: SourceType.SCHEDULER_SOURCE, hostname: `sched-${++seq}`, ip: "127.0.0.1", port: 8002, schedulerClusterId: 1, features: ["schedule"], config: Buffer.alloc(0) }),
      ),
  },
  {
    name: "manager UpdateSeedPeer",
    server: "manager",
    allowed: "seed-1",
    wrong: "scheduler",
    invoke: (caller) => withClient(managerClient(caller), (c) => unaryCall(c.updateSeedPeer.bind(c), { sourceType: SourceType.SEED_PEER_SOURCE, ...seedPeerRequest(`seed-${++seq}`) })),
  },
  {
    name: "manager DeleteSeedPeer",
    server: "manager",
    allowed: "seed-1",
    wrong: "peer-1",
    invoke: async (caller) => {
      // The seed peer to delete exists (registered with a seed certificate), so only the caller decides.
      const hostname = `seed-${++seq}`;
      await withClient(managerClient("seed-1"), (c) => unaryCall(c.updateSeedPeer.bind(c), { sourceType: SourceType.SEED_PEER_SOURCE, ...seedPeerRequest(hostname) }));
      return withClient(managerClient(caller), (c) => unaryCall(c.deleteSeedPeer.bind(c), { sourceType: SourceType.SEED_PEER_SOURCE, hostname, ip: "127.0.0.1", seedPeerClusterId: 1 }));
    },
  },
  {
    name: "scheduler AnnounceHost as a seed peer",
    server: "scheduler",
    allowed: "seed-1",
    wrong: "peer-1",
    invoke: (caller) => withClient(schedulerClient(caller), (c) => unaryCall(c.announceHost.bind(c), { host: hostMsg(`127.0.0.1-seedhost-${++seq}`, { type: HOST_TYPE_SUPER, port: 40000 + seq, hostname: "seed-1" }), interval: { seconds: 300, nanos: 0 } })),
  },
  {
    name: "scheduler DeleteHost",
    server: "scheduler",
    allowed: "peer-1",
    wrong: "manager",
    invoke: async (caller) => {
      const hostId = `127.0.0.1-host-${++seq}`;
      await withClient(schedulerClient("peer-1"), (c) => unaryCall(c.announceHost.bind(c), { host: hostMsg(hostId, { hostname: "peer-1" }), interval: { seconds: 300, nanos: 0 } }));
      return withClient(schedulerClient(caller), (c) => unaryCall(c.deleteHost.bind(c), { hostId }));
    },
  },
];

describe.each(rpcs)("$name", (rpc) => {
  it.each(["plaintext", "tls-without-cert", "foreign-ca"] as const)("refuses a %s client at the connection", async (caller) => {
    expect(await codeOf(rpc.invoke(caller))).toBe(status.UNAVAILABLE);
  });

  it(`answers PERMISSION_DENIED to a ${rpc.wrong} certificate`, async () => {
    expect(await codeOf(rpc.invoke(rpc.wrong))).toBe(status.PERMISSION_DENIED);
  });

  it(`lets a ${rpc.allowed} certificate through`, async () => {
    expect(await codeOf(rpc.invoke(rpc.allowed))).toBe(status.OK);
  });
});

describe("seed-peer announcements", () => {
  it("a host announcing itself as a super seed with a peer certificate is refused, is not known and gets no children", async () => {
    const id = "127.0.0.1-attacker";
    const code = await codeOf(withClient(schedulerClient("peer-1"), (c) => unaryCall(c.announceHost.bind(c), { host: hostMsg(id, { type: HOST_TYPE_SUPER, port: 4999 }), interval: { seconds: 300, nanos: 0 } })));
    expect(code).toBe(status.PERMISSION_DENIED);
    expect(scheduler.resource.hosts.has(id)).toBe(false);
    // No task is ever handed to it as a seed: the ring holds only certified seeds.
    for (let i = 0; i < 50; i++) expect(scheduler.seedPeers?.select(`task-${i}`)?.id).not.toBe(id);
    // Denials are logged once per caller, however often it retries.
    await codeOf(withClient(schedulerClient("peer-1"), (c) => unaryCall(c.announceHost.bind(c), { host: hostMsg(id, { type: HOST_TYPE_SUPER, port: 4999 }), interval: { seconds: 300, nanos: 0 } })));
    const denials = logLines.filter((l) => l.includes("permission denied") && l.includes("peer-1") && l.includes("AnnounceHost as a seed peer"));
    expect(denials).toHaveLength(1);
  });

  it("a peer certificate cannot delete a seed peer's host or take over its id", async () => {
    const seedId = "127.0.0.1-real-seed";
    await withClient(schedulerClient("seed-1"), (c) => unaryCall(c.announceHost.bind(c), { host: hostMsg(seedId, { type: HOST_TYPE_SUPER, port: 4998, hostname: "seed-1" }), interval: { seconds: 300, nanos: 0 } }));
    expect(await codeOf(withClient(schedulerClient("peer-1"), (c) => unaryCall(c.deleteHost.bind(c), { hostId: seedId })))).toBe(status.PERMISSION_DENIED);
    // Nor re-announce the seed's host id as a normal host (which would take it off the ring).
    expect(await codeOf(withClient(schedulerClient("peer-1"), (c) => unaryCall(c.announceHost.bind(c), { host: hostMsg(seedId, { port: 4998 }), interval: { seconds: 300, nanos: 0 } })))).toBe(status.PERMISSION_DENIED);
    expect(scheduler.resource.hosts.get(seedId)?.isSeed).toBe(true);
  });

  it("KeepAlive keeps a seed peer's registration alive only for a seed-peer certificate", async () => {
    const hostname = `seed-${++seq}`;
    await withClient(managerClient("seed-1"), (c) => unaryCall(c.updateSeedPeer.bind(c), { sourceType: SourceType.SEED_PEER_SOURCE, ...seedPeerRequest(hostname) }));
    const keepAlive = (caller: Caller) =>
      withClient(managerClient(caller), (c) =>
        codeOf(
          new Promise<void>((resolve, reject) => {
            const stream = c.keepAlive(new Metadata(), { deadline: Date.now() + 5000 }, (e) => (e ? reject(e) : resolve()));
            stream.write({ sourceType: SourceType.SEED_PEER_SOURCE, hostname, ip: "127.0.0.1", clusterId: 1 });
            // The manager answers a refused stream at once; an accepted one when we end it.
            setTimeout(() => stream.end(), 500);
          }),
        ),
      );
    expect(await keepAlive("scheduler")).toBe(status.PERMISSION_DENIED);
    expect(await keepAlive("seed-1")).toBe(status.OK);
  });

  it("without TLS the scheduler is open, as a plaintext Dragonfly scheduler is", async () => {
    const id = "127.0.0.1-plain-seed";
    const c = schedulerClient("plaintext", plainScheduler.grpcPort);
    try {
      await unaryCall(c.announceHost.bind(c), { host: hostMsg(id, { type: HOST_TYPE_SUPER, port: 4997 }), interval: { seconds: 300, nanos: 0 } });
      expect(plainScheduler.resource.hosts.get(id)?.isSeed).toBe(true);
      await new Promise<void>((resolve, reject) => c.deleteHost({ hostId: id }, new Metadata(), (e) => (e ? reject(e) : resolve())));
      expect(plainScheduler.resource.hosts.has(id)).toBe(false);
    } finally {
      c.close();
    }
  });
});
