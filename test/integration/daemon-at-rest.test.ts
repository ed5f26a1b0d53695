// Pieces sealed at rest (issue 21), with a real manager handing out tenant keys over mTLS and
// real daemons: a task of an encrypted tenant or application is stored as ciphertext (a known
// marker of the content is nowhere in the store's files), a child fetches it P2P from a sealed
// parent (plain bytes over the piece connections' TLS, verified against the digests of the
// plain bytes), outputs and exports are the source's bytes with mode 0600, a flipped byte in
// the stored ciphertext fails the read clearly and leaves no output, and a rotated key seals
// new tasks while the older ones still open, across a daemon restart too. An origin that does
// not tell the length is staged sealed for a sealed task: held mid-body, the daemon's whole
// data directory holds no plaintext marker (a task it does not seal shows it does find one).
// The manager hands keys only to hosts it has on record in the tenant's clusters: both daemons
// are registered as peers of the default cluster.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { channelCredentials, loadTls, type TlsFiles } from "../../src/common/grpc/tls.js";
import { silentLogger } from "../../src/common/logger.js";
import { validateConfig } from "../../src/common/config.js";
import { DaemonConfigSchema, resolveDaemonConfig } from "../../src/daemon/config.js";
import { startDaemon, type DaemonHandle } from "../../src/daemon/daemon.js";
import { TenantKeysClient, type TenantKey } from "../../src/gen/damselfly/manager/v1/keys.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { startManager, type ManagerHandle } from "../../src/manager/server.js";
import { stackCertificates } from "../../src/up/pki.js";
import { main as dfcache } from "../../src/cli/dfcache.js";
import { restClient } from "../helpers/manager-api.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestScheduler, tempDir } from "../helpers/swarm.js";

const SIZE = 32 * 1024 * 1024;
const ROOT_PASSWORD = "at-rest-root-pass";

let certs: Map<string, TlsFiles>;
let manager: ManagerHandle;
let plainManager: ManagerHandle;
let scheduler: SchedulerHandle;
let origin: Origin;
let content: Buffer;
const daemons = new Map<string, DaemonHandle>();
const dirs = new Map<string, string>();
const out = tempDir("at-rest-out");

function daemonConfig(name: string, encryption: { tenants?: string[]; applications?: string[] }) {
  const dir = dirs.get(name) ?? tempDir(`at-rest-${name}`);
  dirs.set(name, dir);
  const tls = certs.get(name);
  return resolveDaemonConfig(
    validateConfig(DaemonConfigSchema, {
      host: { ip: "127.0.0.1", hostname: name },
      download: { server: { socketPath: join(dir, "dfdaemon.sock") }, collectedPieceTimeout: "10s", pieceTimeout: "30s" },
      upload: { server: { ip: "127.0.0.1", port: 0 } },
      manager: { addr: `127.0.0.1:${manager.grpcPort}`, ...tls },
      // Rotations reach new tasks within a second.
      dynconfig: { refreshInterval: "1s" },
      scheduler: { addrs: [`127.0.0.1:${scheduler.grpcPort}`], announceInterval: "30s" },
      storage: { dir, keep: true, server: { ip: "127.0.0.1", tcpPort: 0, quicPort: -1, tls }, encryption },
      health: { server: { ip: "127.0.0.1", port: 0 } },
      metrics: { server: { ip: "127.0.0.1", port: 0 } },
      security: { allowedBackToSourceCIDRs: ["127.0.0.0/8"] },
    }),
  );
}

async function start(name: string, encryption: { tenants?: string[]; applications?: string[] }): Promise<DaemonHandle> {
  const d = await startDaemon(daemonConfig(name, encryption), silentLogger());
  daemons.set(name, d);
  return d;
}

/** Every regular file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : e.isFile() ? [join(dir, e.name)] : []));
}

/** The store files of task `taskId` on daemon `d` that contain `marker`. */
function holding(d: DaemonHandle, taskId: string, marker: Buffer): string[] {
  const task = d.storage.get(taskId);
  if (!task) throw new Error(`task ${taskId} is not stored`);
  return filesUnder(join(task.contentPath, "..")).filter((f) => readFileSync(f).includes(marker));
}

/** Flips one bit of the stored content of `taskId` at `offset`. */
function flipStoredByte(d: DaemonHandle, taskId: string, offset: number): void {
  const path = d.storage.get(taskId)?.contentPath ?? "";
  const bytes = readFileSync(path);
  bytes[offset] = (bytes[offset] ?? 0) ^ 0x01;
  writeFileSync(path, bytes);
}

async function exportTask(d: DaemonHandle, taskId: string, path: string): Promise<{ code: number; stderr: string }> {
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stderr, "write").mockImplementation((s: string | Uint8Array) => chunks.push(String(s)) > 0);
  try {
    const code = await dfcache(["-e", d.socketPath, "export", taskId, "-O", path]);
    return { code, stderr: chunks.join("") };
  } finally {
    spy.mockRestore();
  }
}

const mode = (path: string) => statSync(path).mode & 0o777;

beforeAll(async () => {
  const work = tempDir("at-rest-pki");
  certs = await stackCertificates(join(work, "pki"), [
    { name: "manager", role: "manager" },
    { name: "scheduler", role: "scheduler" },
    { name: "parent", role: "peer" },
    { name: "child", role: "peer" },
  ]);
  manager = await startManager(
    {
      server: { dataDir: join(work, "manager"), rest: { addr: "127.0.0.1:0" }, grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 }, tls: certs.get("manager") } },
      encryption: { key: randomBytes(32).toString("base64") },
      metrics: { enable: false },
    },
    { logger: silentLogger(), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: ROOT_PASSWORD } },
  );
  plainManager = await startManager({ server: { dataDir: join(work, "plain-manager"), rest: { addr: "127.0.0.1:0" }, grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 } } }, metrics: { enable: false } }, { logger: silentLogger(), env: {} });
  scheduler = await startTestScheduler();
  content = makeContent(SIZE, 21);
  origin = await startOrigin(content);
  // The manager hands a tenant's key only to hosts it has on record in that tenant's clusters
  // (tenant-access.ts): both daemons are peers of the default cluster, as sync_peers (or an
  // operator, here) records them.
  const api = restClient(`http://127.0.0.1:${manager.restPort}`);
  const root = (await api<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name: "root", password: ROOT_PASSWORD })).body.token;
  for (const host_name of ["parent", "child"]) {
    const r = await api("POST", "/api/v1/peers", root, { host_name, type: "normal", ip: "127.0.0.1", port: 4000, download_port: 4001, proxy_port: 4002, scheduler_cluster_id: 1 });
    expect(r.status).toBe(200);
  }
  // The parent seals every task of the default tenant; the child only those of "secret-app".
  await start("parent", { tenants: ["default"] });
  await start("child", { applications: ["secret-app"] });
}, 120_000);

afterAll(async () => {
  for (const d of daemons.values()) await d.close();
  await scheduler?.close();
  await manager?.close();
  await plainManager?.close();
  await origin?.close();
  cleanupTempDirs();
});

describe("pieces sealed at rest", () => {
  const marker = () => content.subarray(5 * 1024 * 1024 + 123, 5 * 1024 * 1024 + 123 + 64);
  let taskId = "";

  it("stores an encrypted tenant's task as ciphertext, serves it P2P to a sealed child, and writes outputs that equal the source, owner-only", async () => {
    const parent = daemons.get("parent") as DaemonHandle;
    const child = daemons.get("child") as DaemonHandle;
    const a = await downloadVia(parent.socketPath, { url: origin.url(), application: "secret-app", outputPath: join(out, "parent.bin") });
    taskId = a.taskId;
    expect(sha256File(join(out, "parent.bin"))).toBe(origin.sha256);
    expect(mode(join(out, "parent.bin"))).toBe(0o600);
    expect(parent.storage.get(taskId)?.meta.sealed).toEqual({ tenantId: 1, tenant: "default", keyVersion: 1 });
    expect(holding(parent, taskId, marker())).toEqual([]);

    const served = origin.bytesServed;
    const b = await downloadVia(child.socketPath, { url: origin.url(), application: "secret-app", outputPath: join(out, "child.bin") });
    expect(b.taskId).toBe(taskId);
    expect(sha256File(join(out, "child.bin"))).toBe(origin.sha256);
    // From the parent, over TLS, verified against the digests of the plain bytes.
    expect(origin.bytesServed - served).toBeLessThan(SIZE / 4);
    expect(parent.pieceServerStats().tlsConnectionsAccepted).toBeGreaterThan(0);
    expect(child.storage.get(taskId)?.meta.sealed?.tenant).toBe("default");
    expect(holding(child, taskId, marker())).toEqual([]);

    // The same URL under an application the child does not seal is stored in plaintext: the
    // marker search finds plaintext where there is some.
    const open = await downloadVia(child.socketPath, { url: origin.url(), application: "public-app", outputPath: join(out, "public.bin") });
    expect(child.storage.get(open.taskId)?.meta.sealed).toBeUndefined();
    expect(holding(child, open.taskId, marker()).length).toBeGreaterThan(0);
    expect(mode(join(out, "public.bin"))).not.toBe(0o600);

    // dfcache export of the sealed task: the plain content, for its owner only.
    const exported = join(out, "exported.bin");
    expect((await exportTask(child, taskId, exported)).code).toBe(0);
    expect(sha256File(exported)).toBe(origin.sha256);
    expect(mode(exported)).toBe(0o600);
  });

  it("fails the read of a tampered sealed piece with a clear error, writes no output, and heals on the next download", async () => {
    const child = daemons.get("child") as DaemonHandle;
    const offset = 9 * 1024 * 1024 + 77;
    const piece = Math.floor(offset / (child.storage.get(taskId)?.meta.pieceLength ?? 1));
    flipStoredByte(child, taskId, offset);
    const target = join(out, "tampered.bin");
    const r = await exportTask(child, taskId, target);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`piece ${piece} of task ${taskId} failed its integrity check at rest`);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(out).filter((f) => f.includes("tampered"))).toEqual([]);
    // The piece was dropped: a download fetches it again (from the parent) and the output is whole.
    expect(child.storage.get(taskId)?.piece(piece)).toBeUndefined();
    await downloadVia(child.socketPath, { url: origin.url(), application: "secret-app", outputPath: join(out, "healed.bin") });
    expect(sha256File(join(out, "healed.bin"))).toBe(origin.sha256);
  });

  it("seals new tasks under a rotated key while older tasks still open, across a restart too", async () => {
    const api = restClient(`http://127.0.0.1:${manager.restPort}`);
    const signin = await api<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name: "root", password: ROOT_PASSWORD });
    const rotated = await api<{ tenant_id: number; version: number; key?: unknown }>("POST", "/api/v1/tenants/1/keys", signin.body.token);
    expect(rotated.status).toBe(200);
    expect(rotated.body).toMatchObject({ tenant_id: 1, version: 2 });
    expect(rotated.body.key).toBeUndefined();
    const versions = await api<Array<Record<string, unknown>>>("GET", "/api/v1/tenants/1/keys", signin.body.token);
    expect(versions.body.map((v) => v.version)).toEqual([2, 1]);
    expect(versions.body.every((v) => !("key" in v))).toBe(true);
    await new Promise((r) => setTimeout(r, 1200)); // the daemon's current-key TTL (dynconfig.refreshInterval)

    let parent = daemons.get("parent") as DaemonHandle;
    const fresh = await downloadVia(parent.socketPath, { url: origin.url("/file.bin?v=2"), outputPath: join(out, "v2.bin") });
    expect(parent.storage.get(fresh.taskId)?.meta.sealed?.keyVersion).toBe(2);
    expect(sha256File(join(out, "v2.bin"))).toBe(origin.sha256);
    expect(parent.storage.get(taskId)?.meta.sealed?.keyVersion).toBe(1);

    // Restarted, the daemon asks the manager for both versions and opens both tasks.
    await parent.close();
    parent = await start("parent", { tenants: ["default"] });
    for (const [id, name] of [
      [taskId, "old.bin"],
      [fresh.taskId, "new.bin"],
    ] as const) {
      const path = join(out, name);
      expect((await exportTask(parent, id, path)).code).toBe(0);
      expect(sha256File(path)).toBe(origin.sha256);
    }
    expect(holding(parent, fresh.taskId, marker())).toEqual([]);
  });

  it("stages an origin without a content length sealed: no plaintext byte of a sealed task reaches the disk, and the output is whole", async () => {
    const parent = daemons.get("parent") as DaemonHandle;
    const child = daemons.get("child") as DaemonHandle;
    /** Files under `dir` that hold `marker`, and how many bytes are staged under `d`. */
    const holders = (dir: string) => (existsSync(dir) ? filesUnder(dir).filter((f) => readFileSync(f).includes(marker())) : []);
    const stagedBytes = (d: DaemonHandle) => {
      const dir = d.storage.stagingDir("disk");
      return existsSync(dir) ? filesUnder(dir).reduce((n, f) => n + statSync(f).size, 0) : 0;
    };
    // The origin sends 8 MiB (the marker is at 5 MiB) and holds the rest while the disk is scanned.
    origin.framing = "chunked";
    try {
      for (const c of [
        { d: parent, name: "parent", application: undefined, sealed: true },
        // The control: a task the child does not seal is staged in plaintext, and the scan finds it.
        { d: child, name: "child", application: "public-app", sealed: false },
      ]) {
        origin.holdAfter = 8 * 1024 * 1024;
        const url = origin.url(`/file.bin?unknown-length=${c.name}`);
        const output = join(out, `unknown-${c.name}.bin`);
        const download = downloadVia(c.d.socketPath, { url, outputPath: output, ...(c.application ? { application: c.application } : {}) });
        await vi.waitFor(() => expect(stagedBytes(c.d)).toBeGreaterThanOrEqual(7 * 1024 * 1024), { timeout: 60_000, interval: 50 });
        const staging = holders(c.d.storage.stagingDir("disk"));
        if (c.sealed) {
          expect(staging).toEqual([]);
          expect(holders(dirs.get(c.name) ?? "")).toEqual([]);
        } else expect(staging.length).toBeGreaterThan(0);
        origin.release();
        const r = await download;
        expect(sha256File(output)).toBe(origin.sha256);
        expect(c.d.storage.get(r.taskId)?.meta.sealed?.tenant).toBe(c.sealed ? "default" : undefined);
        if (c.sealed) expect(holders(dirs.get(c.name) ?? "")).toEqual([]);
        expect(stagedBytes(c.d)).toBe(0);
      }
    } finally {
      origin.release();
      origin.framing = "length";
    }
  });
});

describe("the manager's TenantKeys service", () => {
  function getKey(target: ManagerHandle, creds: ReturnType<typeof channelCredentials>): Promise<TenantKey> {
    const client = new TenantKeysClient(`127.0.0.1:${target.grpcPort}`, creds);
    return new Promise<TenantKey>((resolve, reject) =>
      client.getTenantKey({ tenantId: 0, application: "", schedulerClusterId: 0, version: 0 }, new Metadata(), { deadline: Date.now() + 5000 }, (err: ServiceError | null, res?: TenantKey) => {
        client.close();
        if (err || !res) reject(err ?? new Error("no answer"));
        else resolve(res);
      }),
    );
  }
  const codeOf = (p: Promise<unknown>) =>
    p.then(
      () => status.OK,
      (e: ServiceError) => e.code,
    );

  it("hands a key to peer certificates only, and never in plaintext", async () => {
    const key = await getKey(manager, channelCredentials(loadTls(certs.get("parent"), "parent"), ["manager"]));
    expect(key.key.length).toBe(32);
    expect(key.tenantName).toBe("default");
    expect(await codeOf(getKey(manager, channelCredentials(loadTls(certs.get("scheduler"), "scheduler"), ["manager"])))).toBe(status.PERMISSION_DENIED);
    expect(await codeOf(getKey(plainManager, channelCredentials(undefined, ["manager"])))).toBe(status.FAILED_PRECONDITION);
  });
});
