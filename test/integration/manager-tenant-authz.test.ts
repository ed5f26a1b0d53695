// Which hosts get which tenant's key (issue 21): a manager running mTLS hands a tenant's at-rest
// key only to hosts it has on record in that tenant's clusters (a peer's scheduler cluster, a
// seed peer's seed-peer cluster and the scheduler clusters it serves), whatever tenant,
// application or cluster id the request names. Two tenants with a cluster each, registered the
// way an operator and the daemons do it (REST API, UpdateSeedPeer), and certificates of one
// cluster CA for all hosts: a host of tenant A gets A's key and PERMISSION_DENIED for B's; a
// certificate whose host the manager does not know gets nothing; each refusal is logged once
// per caller, naming caller and tenant, and no log line holds key material.
// A peer that joined since the last sync_peers (announced to cluster A's scheduler, not yet in
// `peers`) is looked up on that scheduler on its first call and gets A's key; a name no scheduler
// lists stays refused, and is looked up once however often it asks within the retry interval.
// Nor can a certificate put another host's name on cluster A's scheduler, which would have the
// manager record that host in cluster A and hand it tenant A's key.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { channelCredentials, loadTls, type TlsFiles } from "../../src/common/grpc/tls.js";
import { createLogger } from "../../src/common/logger.js";
import { issueLeaf } from "../../src/common/tls/pki.js";
import { TenantKeysClient, type GetTenantKeyRequest, type TenantKey } from "../../src/gen/damselfly/manager/v1/keys.js";
import { ManagerClient, SourceType, type SeedPeer } from "../../src/gen/manager/v2/manager.js";
import { startManager, type ManagerHandle } from "../../src/manager/server.js";
import { SchedulerClient } from "../../src/gen/scheduler/v2/scheduler.js";
import { createRegistry } from "../../src/common/metrics.js";
import { startScheduler, type SchedulerHandle } from "../../src/scheduler/server.js";
import { stackCertificates } from "../../src/up/pki.js";
import { restClient } from "../helpers/manager-api.js";
import { announceHost, hostMsg, unaryCall } from "./scheduler-helpers.js";

const ROOT_PASSWORD = "authz-root-pass";
const work = mkdtempSync(join(tmpdir(), "tenant-authz-"));
const logLines: string[] = [];
let certs: Map<string, TlsFiles>;
let manager: ManagerHandle;
/** Cluster A's scheduler (it registers itself with the manager); never synced into `peers`. */
let scheduler: SchedulerHandle;
/** Tenant B's id and its scheduler cluster's (tenant A is the default tenant, 1, with cluster 1). */
const b = { tenant: 0, cluster: 0 };

type Caller = "peer-a" | "peer-b" | "seed-a" | "stranger" | "seed-named-peer-a" | "peer-new" | "stranger-2" | "peer-b-new";

function getKey(caller: Caller, req: Partial<GetTenantKeyRequest>): Promise<TenantKey> {
  const client = new TenantKeysClient(`127.0.0.1:${manager.grpcPort}`, channelCredentials(loadTls(certs.get(caller), caller), ["manager"]));
  return new Promise<TenantKey>((resolve, reject) =>
    client.getTenantKey({ tenantId: 0, application: "", schedulerClusterId: 0, version: 0, ...req }, new Metadata(), { deadline: Date.now() + 5000 }, (err: ServiceError | null, res?: TenantKey) => {
      client.close();
      if (err || !res) reject(err ?? new Error("no answer"));
      else resolve(res);
    }),
  );
}

beforeAll(async () => {
  certs = await stackCertificates(join(work, "pki"), [
    { name: "manager", role: "manager" },
    { name: "peer-a", role: "peer" },
    { name: "peer-b", role: "peer" },
    { name: "seed-a", role: "seed-peer" },
    { name: "stranger", role: "peer" },
    { name: "peer-new", role: "peer" },
    { name: "stranger-2", role: "peer" },
    { name: "peer-b-new", role: "peer" },
    { name: "scheduler-a", role: "scheduler" },
  ]);
  // A valid seed-peer certificate of the same CA carrying the name of a peer the manager knows.
  const pki = join(work, "pki");
  const leaf = await issueLeaf({ cert: readFileSync(join(pki, "ca.pem"), "utf8"), key: readFileSync(join(pki, "ca-key.pem"), "utf8") }, { role: "seed-peer", name: "peer-a" });
  const misnamed = { caCert: join(pki, "ca.pem"), cert: join(work, "seed-named-peer-a.pem"), key: join(work, "seed-named-peer-a-key.pem") };
  writeFileSync(misnamed.cert, leaf.cert);
  writeFileSync(misnamed.key, leaf.key, { mode: 0o600 });
  certs.set("seed-named-peer-a", misnamed);
  manager = await startManager(
    {
      server: { dataDir: join(work, "manager"), rest: { addr: "127.0.0.1:0" }, grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 }, tls: certs.get("manager") } },
      encryption: { key: randomBytes(32).toString("base64") },
      metrics: { enable: false },
    },
    { logger: createLogger({ component: "manager" }, { write: (s: string) => logLines.push(s) }), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: ROOT_PASSWORD } },
  );

  const api = restClient(`http://127.0.0.1:${manager.restPort}`);
  const root = (await api<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name: "root", password: ROOT_PASSWORD })).body.token;
  const ok = async <T>(path: string, body: unknown): Promise<T> => {
    const r = await api<T>("POST", path, root, body);
    if (r.status !== 200) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  b.tenant = (await ok<{ id: number }>("/api/v1/tenants", { name: "tenant-b" })).id;
  b.cluster = (await ok<{ id: number }>("/api/v1/clusters", { name: "cluster-b", tenant_id: b.tenant, scheduler_cluster_config: {}, seed_peer_cluster_config: {}, peer_cluster_config: {} })).id;
  await ok("/api/v1/applications", { name: "app-a", url: "https://a.example.com", priority: { value: 1 } });
  await ok("/api/v1/applications", { name: "app-b", url: "https://b.example.com", priority: { value: 1 }, tenant_id: b.tenant });
  // Peers as sync_peers records them (or an operator does): host name, address, scheduler cluster.
  const peer = (host_name: string, scheduler_cluster_id: number) => ({ host_name, type: "normal", ip: "127.0.0.1", port: 4000, download_port: 4001, proxy_port: 4002, scheduler_cluster_id });
  await ok("/api/v1/peers", peer("peer-a", 1));
  await ok("/api/v1/peers", peer("peer-b", b.cluster));
  // The seed peer registers itself, in the default seed-peer cluster (which serves cluster 1).
  const client = new ManagerClient(`127.0.0.1:${manager.grpcPort}`, channelCredentials(loadTls(certs.get("seed-a"), "seed-a"), ["manager"]));
  try {
    await unaryCall<Parameters<typeof client.updateSeedPeer>[0], SeedPeer>(client.updateSeedPeer.bind(client), {
      sourceType: SourceType.SEED_PEER_SOURCE,
      hostname: "seed-a",
      type: "super",
      ip: "127.0.0.1",
      port: 4000,
      downloadPort: 4001,
      seedPeerClusterId: 1,
    });
  } finally {
    client.close();
  }
  scheduler = await startScheduler(
    {
      server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", advertisePort: 0, host: "scheduler-a", tls: certs.get("scheduler-a") },
      manager: { addr: `127.0.0.1:${manager.grpcPort}`, schedulerClusterID: 1, tls: certs.get("scheduler-a") },
      metrics: { enable: false },
      seedPeer: { enable: false },
    },
    { logger: createLogger({ component: "scheduler" }, { write: () => undefined }), registry: createRegistry(false) },
  );
  // A node started after the last sync: it announced itself to cluster A's scheduler only.
  const sc = new SchedulerClient(`127.0.0.1:${scheduler.grpcPort}`, channelCredentials(loadTls(certs.get("peer-new"), "peer-new"), ["scheduler"]));
  try {
    await announceHost(sc, hostMsg("peer-new"));
  } finally {
    sc.close();
  }
}, 120_000);

afterAll(async () => {
  await scheduler?.close();
  await manager?.close();
  rmSync(work, { recursive: true, force: true });
});

describe("GetTenantKey hands a tenant's key only to that tenant's hosts", () => {
  type Case = { caller: Caller; ask: () => Partial<GetTenantKeyRequest>; what: string } & ({ tenant: () => number } | { denied: RegExp });
  const A = () => 1;
  const B = () => b.tenant;
  const cases: Case[] = [
    { what: "a peer of cluster A: its own cluster's tenant", caller: "peer-a", ask: () => ({}), tenant: A },
    { what: "a peer of cluster A: tenant A's key by id and version", caller: "peer-a", ask: () => ({ tenantId: 1, version: 1 }), tenant: A },
    { what: "a peer of cluster A: an application of tenant A", caller: "peer-a", ask: () => ({ application: "app-a" }), tenant: A },
    { what: "a peer of cluster A claiming cluster B's id: still its own tenant", caller: "peer-a", ask: () => ({ schedulerClusterId: b.cluster }), tenant: A },
    { what: "a peer of cluster A: tenant B by id", caller: "peer-a", ask: () => ({ tenantId: b.tenant }), denied: /peer peer-a \(scheduler cluster 1\) is not a host of tenant \d+/ },
    { what: "a peer of cluster A: an application of tenant B", caller: "peer-a", ask: () => ({ application: "app-b" }), denied: /peer peer-a .* is not a host of tenant \d+/ },
    { what: "a peer of cluster A: a tenant that does not exist, answered alike", caller: "peer-a", ask: () => ({ tenantId: 999 }), denied: /is not a host of tenant 999/ },
    { what: "a peer of cluster B: its tenant, by application", caller: "peer-b", ask: () => ({ application: "app-b" }), tenant: B },
    { what: "a peer of cluster B: its own cluster's tenant", caller: "peer-b", ask: () => ({ schedulerClusterId: 1 }), tenant: B },
    { what: "a peer of cluster B: tenant A by id", caller: "peer-b", ask: () => ({ tenantId: 1 }), denied: /peer peer-b .* is not a host of tenant 1$/ },
    { what: "a seed peer of cluster A: its cluster's tenant", caller: "seed-a", ask: () => ({}), tenant: A },
    { what: "a seed peer of cluster A claiming cluster B's id", caller: "seed-a", ask: () => ({ schedulerClusterId: b.cluster }), tenant: A },
    { what: "a seed peer of cluster A: tenant B by id", caller: "seed-a", ask: () => ({ tenantId: b.tenant, version: 1 }), denied: /seed peer seed-a \(seed peer cluster 1\) is not a host of tenant \d+/ },
    { what: "a seed peer of cluster A: an application of tenant B", caller: "seed-a", ask: () => ({ application: "app-b" }), denied: /seed peer seed-a .* is not a host of tenant/ },
    { what: "a peer the manager has no record of", caller: "stranger", ask: () => ({}), denied: /peer stranger is not on record at this manager \(no peers row for host stranger, and no scheduler of this manager's clusters lists it\)/ },
    { what: "a peer the manager has no record of, naming a tenant", caller: "stranger", ask: () => ({ tenantId: 1 }), denied: /peer stranger is not on record/ },
    { what: "a seed-peer certificate named as a known peer (no seed peer of that name)", caller: "seed-named-peer-a", ask: () => ({}), denied: /seed-peer peer-a is not on record at this manager \(no seed_peers row/ },
  ];

  it.each(cases)("$what", async (c) => {
    const req = c.ask();
    if ("tenant" in c) {
      const key = await getKey(c.caller, req);
      expect(key.tenantId).toBe(c.tenant());
      expect(key.tenantName).toBe(c.tenant() === 1 ? "default" : "tenant-b");
      expect(key.key.length).toBe(32);
    } else {
      const err = await getKey(c.caller, req).then(
        () => undefined,
        (e: ServiceError) => e,
      );
      expect(err?.code).toBe(status.PERMISSION_DENIED);
      expect(err?.details).toMatch(c.denied);
    }
  });

  it("gives the same tenant the same key whichever of its hosts asks, and another tenant another", async () => {
    const [pa, sa, pb] = await Promise.all([getKey("peer-a", {}), getKey("seed-a", { application: "app-a" }), getKey("peer-b", {})]);
    expect(sa.key).toEqual(pa.key);
    expect(pb.key).not.toEqual(pa.key);
  });

  it("logs each refused caller once, naming it and the tenant, and never a key", async () => {
    for (let i = 0; i < 3; i++) await getKey("peer-b", { tenantId: 1 }).catch(() => undefined);
    const denials = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "permission denied (logged once per caller)");
    const forPeerB = denials.filter((l) => l.caller === "peer peer-b");
    expect(forPeerB).toHaveLength(1);
    expect(forPeerB[0]).toMatchObject({ rpc: "GetTenantKey", tenantId: 1, tenant: "default" });
    expect(denials.filter((l) => l.caller === "peer stranger")).toHaveLength(1);
    const keys = await Promise.all([getKey("peer-a", {}), getKey("peer-b", {})]);
    for (const k of keys) {
      for (const enc of ["hex", "base64"] as const) expect(logLines.some((l) => l.includes(k.key.toString(enc)))).toBe(false);
    }
  });
});

describe("a peer not yet synced is looked up on its cluster's schedulers", () => {
  /** ListHosts calls cluster A's scheduler has answered. */
  const listHostsCalls = async () => (await scheduler.registry.getSingleMetric("dragonfly_scheduler_list_hosts_total")?.get())?.values[0]?.value ?? 0;
  const api = () => restClient(`http://127.0.0.1:${manager.restPort}`);

  it("gives a peer that announced itself to cluster A's scheduler tenant A's key on its first call, and records it as sync_peers would", async () => {
    const before = await listHostsCalls();
    const key = await getKey("peer-new", {});
    expect(key.tenantId).toBe(1);
    expect(key.key).toEqual((await getKey("peer-a", {})).key);
    expect(await listHostsCalls()).toBe(before + 1);
    const root = (await api()<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name: "root", password: ROOT_PASSWORD })).body.token;
    const peers = (await api()<Array<{ host_name: string; ip: string; scheduler_cluster_id: number; state: string }>>("GET", "/api/v1/peers?host_name=peer-new", root)).body;
    expect(peers.filter((p) => p.host_name === "peer-new")).toMatchObject([{ ip: "127.0.0.1", scheduler_cluster_id: 1, state: "active" }]);
    // Recorded now: the next call needs no lookup.
    await getKey("peer-new", { tenantId: 1 });
    expect(await listHostsCalls()).toBe(before + 1);
  });

  it("refuses a host no scheduler lists, and looks it up once however often it asks within the interval", async () => {
    const before = await listHostsCalls();
    const refusal = (req: Partial<GetTenantKeyRequest>) =>
      getKey("stranger-2", req).then(
        () => undefined,
        (e: ServiceError) => e,
      );
    // Concurrent calls share one lookup; later ones within the interval start none.
    const errs = [...(await Promise.all([refusal({}), refusal({ tenantId: 1 }), refusal({ application: "app-a" })])), await refusal({}), await refusal({ tenantId: 1 })];
    for (const err of errs) {
      expect(err?.code).toBe(status.PERMISSION_DENIED);
      expect(err?.details).toMatch(/peer stranger-2 is not on record at this manager \(no peers row for host stranger-2, and no scheduler of this manager's clusters lists it\)/);
    }
    expect(await listHostsCalls()).toBe(before + 1);
    const denials = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "permission denied (logged once per caller)" && l.caller === "peer stranger-2");
    expect(denials).toHaveLength(1);
  });
});

describe("a scheduler takes a host only under a name of its caller's certificate", () => {
  it("a stranger's certificate announcing another tenant's new host into cluster A gets neither itself nor that host tenant A's key", async () => {
    // peer-b-new: a host of tenant B that has not announced itself yet, so no row names it.
    const sc = new SchedulerClient(`127.0.0.1:${scheduler.grpcPort}`, channelCredentials(loadTls(certs.get("stranger"), "stranger"), ["scheduler"]));
    const announced = await announceHost(sc, hostMsg("127.0.0.1-peer-b-new", { hostname: "peer-b-new" }))
      .then(() => undefined, (e: ServiceError) => e)
      .finally(() => sc.close());
    expect(announced?.code).toBe(status.PERMISSION_DENIED);
    expect([...scheduler.resource.hosts.values()].map((h) => h.hostname)).not.toContain("peer-b-new");
    // The manager finds peer-b-new on no scheduler, so records it nowhere: had the announcement
    // been taken, its lookup would have put peer-b-new in cluster A and answered with A's key.
    const asks: Array<[Caller, Partial<GetTenantKeyRequest>]> = [["peer-b-new", {}], ["peer-b-new", { tenantId: 1 }], ["stranger", { tenantId: 1 }], ["stranger", {}]];
    for (const [caller, req] of asks) {
      const err = await getKey(caller, req).then(
        () => undefined,
        (e: ServiceError) => e,
      );
      expect(err?.code).toBe(status.PERMISSION_DENIED);
      expect(err?.details).toMatch(new RegExp(`peer ${caller} is not on record at this manager`));
    }
  });
});
