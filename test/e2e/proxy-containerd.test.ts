// containerd 1.6 (Debian) pulls an image through the dfdaemon registry mirror, configured by
// `damselfly init containerd`: Debian's docker-registry serves an image this test builds and
// pushes (three uncompressed layers, tens of MiB); two peers, each with its own containerd,
// pull it through their own proxy, so the registry's access log shows each blob served about
// once; the unpacked files match. A second registry with htpasswd auth checks that the 401
// challenge passes through the mirror and the pull with credentials succeeds.
//
// Needs root (containerd unpacks with chown) and the binaries docker-registry, containerd, ctr
// and python3 (bcrypt for htpasswd); each test skips with a notice when one is missing.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runInit } from "../../src/cli/commands/init.js";
import { silentLogger } from "../../src/common/logger.js";
import { startDaemon, type DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { cleanupTempDirs, startTestDaemon, startTestScheduler, tempDir, testDaemonConfig } from "../helpers/swarm.js";

const which = (bin: string) => ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"].map((d) => join(d, bin)).find((p) => existsSync(p));
const BIN = { registry: which("docker-registry"), containerd: which("containerd"), ctr: which("ctr"), python3: which("python3") };
const missing = [...Object.entries(BIN).filter(([, p]) => !p).map(([n]) => n), ...(process.getuid?.() === 0 ? [] : ["root"])];
const SKIP = missing.length > 0 ? `proxy-containerd: skipped, needs ${missing.join(", ")}` : "";
if (SKIP) console.warn(SKIP);
const run = SKIP ? it.skip : it;

const children: ChildProcess[] = [];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} did not come up`);
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), 5000).unref();
  });
}

interface Registry {
  port: number;
  /** Access log lines (stdout + stderr of the registry). */
  log(): string;
}

async function startRegistry(dir: string, htpasswd?: string): Promise<Registry> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const auth = htpasswd ? `auth:\n  htpasswd:\n    realm: e2e\n    path: ${htpasswd}\n` : "";
  writeFileSync(join(dir, "config.yml"), `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\n${auth}http:\n  addr: 127.0.0.1:${port}\n`);
  let text = "";
  const child = spawn(BIN.registry as string, ["serve", join(dir, "config.yml")], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  child.stdout?.on("data", (c: Buffer) => (text += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (text += c.toString()));
  await waitFor(async () => {
    const r = await request(`http://127.0.0.1:${port}/v2/`);
    await r.body.dump();
    return r.statusCode === 200 || r.statusCode === 401;
  }, "docker-registry");
  return { port, log: () => text };
}

/** A tar archive (ustar) of regular files, as an uncompressed OCI layer. */
function tarOf(files: Record<string, Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, body] of Object.entries(files)) {
    const h = Buffer.alloc(512);
    h.write(name, 0, 100, "utf8");
    h.write("0000644\0", 100);
    h.write("0000000\0", 108);
    h.write("0000000\0", 116);
    h.write(`${body.length.toString(8).padStart(11, "0")}\0`, 124);
    h.write(`${Math.floor(Date.now() / 1000).toString(8).padStart(11, "0")}\0`, 136);
    h.write("        ", 148);
    h.write("0", 156);
    h.write("ustar\0", 257);
    h.write("00", 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
    parts.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

interface Image {
  manifestDigest: string;
  layers: Array<{ digest: string; size: number }>;
  files: Record<string, Buffer>;
}

/** Pushes a three-layer image through the distribution API; returns its digests. */
async function pushImage(port: number, repo: string, tag: string, authHeader?: string): Promise<Image> {
  const base = `http://127.0.0.1:${port}/v2/${repo}`;
  const headers = authHeader ? { authorization: authHeader } : {};
  const upload = async (content: Buffer) => {
    const digest = sha(content);
    const start = await request(`${base}/blobs/uploads/`, { method: "POST", headers });
    await start.body.dump();
    if (start.statusCode !== 202) throw new Error(`upload start answered ${start.statusCode}`);
    const location = new URL(String(start.headers.location), `http://127.0.0.1:${port}`);
    location.searchParams.set("digest", digest);
    const put = await request(location.href, { method: "PUT", body: content, headers: { ...headers, "content-type": "application/octet-stream" } });
    await put.body.dump();
    if (put.statusCode !== 201) throw new Error(`blob upload answered ${put.statusCode}`);
    return { digest, size: content.length };
  };
  const files: Record<string, Buffer> = {};
  const layers = [];
  for (let i = 0; i < 3; i++) {
    const layerFiles = { [`data/layer-${i}.bin`]: randomBytes((10 + 3 * i) * 1024 * 1024), [`etc/layer-${i}.txt`]: Buffer.from(`layer ${i}\n`) };
    Object.assign(files, layerFiles);
    layers.push(await upload(tarOf(layerFiles)));
  }
  const config = await upload(
    Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) }, history: layers.map(() => ({ created_by: "proxy-containerd e2e" })) })),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", ...l })),
    }),
  );
  const put = await request(`${base}/manifests/${tag}`, { method: "PUT", body: manifest, headers: { ...headers, "content-type": "application/vnd.oci.image.manifest.v1+json" } });
  await put.body.dump();
  if (put.statusCode !== 201) throw new Error(`manifest put answered ${put.statusCode}`);
  return { manifestDigest: sha(manifest), layers: [config, ...layers], files };
}

interface Containerd {
  root: string;
  ctr(args: string[]): Promise<{ code: number | null; out: string }>;
}

/** A private containerd (own root, state and socket), configured by `damselfly init containerd`. */
async function startContainerd(dir: string, proxyPort: number, registryPort: number): Promise<Containerd & { hostsDir: string }> {
  mkdirSync(dir, { recursive: true });
  const sock = join(dir, "containerd.sock");
  const config = join(dir, "config.toml");
  writeFileSync(config, `version = 2\nroot = "${join(dir, "root")}"\nstate = "${join(dir, "state")}"\n[grpc]\n  address = "${sock}"\n[plugins."io.containerd.internal.v1.opt"]\n  path = "${join(dir, "opt")}"\n`);
  const hostsDir = join(dir, "certs.d");
  const result = await runInit({ runtime: "containerd", configPath: config, hostsDir, proxyAddr: `http://127.0.0.1:${proxyPort}`, registries: [`127.0.0.1:${registryPort}=http://127.0.0.1:${registryPort}`] });
  expect(result.changes.map((c) => c.path)).toContain(join(hostsDir, `127.0.0.1:${registryPort}`, "hosts.toml"));
  const child = spawn(BIN.containerd as string, ["--config", config], { stdio: "ignore" });
  children.push(child);
  const ctr = (args: string[]) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const c = spawn(BIN.ctr as string, ["--address", sock, ...args], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      c.stdout.on("data", (x: Buffer) => (out += x.toString()));
      c.stderr.on("data", (x: Buffer) => (out += x.toString()));
      c.on("close", (code) => resolve({ code, out }));
    });
  await waitFor(async () => (await ctr(["version"])).code === 0, "containerd");
  return { root: join(dir, "root"), ctr, hostsDir };
}

/** Bytes the registry sent per blob digest, from its combined-format access log. */
function blobBytes(log: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of log.matchAll(/"GET \/v2\/[^ ]+\/blobs\/(sha256:[0-9a-f]{64})(?:\?[^ ]*)? HTTP\/1\.1" (\d{3}) (\d+)/g)) {
    if (m[1] && (m[2] === "200" || m[2] === "206")) out.set(m[1], (out.get(m[1]) ?? 0) + Number(m[3]));
  }
  return out;
}

function findFile(root: string, name: string): string | undefined {
  const stack = [root];
  while (stack.length > 0) {
    const d = stack.pop() as string;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile() && p.endsWith(name)) return p;
    }
  }
  return undefined;
}

describe("containerd pulls through the dfdaemon registry mirror", () => {
  let scheduler: SchedulerHandle;
  const daemons: DaemonHandle[] = [];

  beforeAll(async () => {
    if (SKIP) return;
    scheduler = await startTestScheduler();
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    daemons.push(await startTestDaemon({ name: "e2e-seed", schedulers: [addr], seed: true }));
    for (let i = 0; i < 2; i++) {
      daemons.push(await startDaemon(testDaemonConfig({ name: `e2e-peer-${i}`, schedulers: [addr], overrides: { proxy: { server: { ip: "127.0.0.1", port: 0 } } } }), silentLogger()));
    }
  });

  afterAll(async () => {
    await Promise.all(children.splice(0).map(stop));
    for (const d of daemons) await d.close();
    await scheduler?.close();
    cleanupTempDirs();
  });

  run("pulls an image with two containerds through two peers; the registry serves each blob about once", async () => {
    const reg = await startRegistry(tempDir("e2e-registry"));
    const image = await pushImage(reg.port, "e2e/app", "v1");
    const ref = `127.0.0.1:${reg.port}/e2e/app:v1`;
    const before = blobBytes(reg.log());
    for (const [i, peer] of daemons.slice(1).entries()) {
      const ctd = await startContainerd(tempDir(`e2e-containerd-${i}`), peer.proxyPort, reg.port);
      const pull = await ctd.ctr(["images", "pull", "--hosts-dir", ctd.hostsDir, "--snapshotter", "native", ref]);
      expect(pull.code, pull.out).toBe(0);
      const ls = await ctd.ctr(["images", "ls"]);
      expect(ls.out).toContain(image.manifestDigest);
      const check = await ctd.ctr(["images", "check"]);
      expect(check.out).toMatch(/complete \(\d+\/\d+\)/);
      // The unpacked root filesystem holds the bytes we put in the layers.
      for (const [name, body] of Object.entries(image.files)) {
        const path = findFile(join(ctd.root, "io.containerd.snapshotter.v1.native", "snapshots"), name);
        expect(path, name).toBeDefined();
        expect(statSync(path as string).size).toBe(body.length);
        expect(readFileSync(path as string).equals(body), name).toBe(true);
      }
    }
    // Every blob went through the proxies (task ids prove the P2P path), and the registry sent
    // each about once although two runtimes pulled it.
    const after = blobBytes(reg.log());
    for (const l of image.layers) {
      const sent = (after.get(l.digest) ?? 0) - (before.get(l.digest) ?? 0);
      expect(sent, l.digest).toBeGreaterThan(0);
      // Blobs of one piece or less skip the scheduler (as in Dragonfly): one fetch per peer.
      const fetches = l.size <= 4 * 1024 * 1024 ? 2 : 1;
      expect(sent, l.digest).toBeLessThanOrEqual(Math.ceil(1.1 * fetches * l.size) + 16);
    }
    const peerTasks = daemons.slice(1).map((d) => d.storage.list().filter((t) => t.meta.state === "succeeded").length);
    expect(peerTasks.every((n) => n >= image.layers.filter((l) => l.size > 4 * 1024 * 1024).length)).toBe(true);
  });

  run("pulls from a private registry (htpasswd) with the 401 challenge passed through the mirror", async () => {
    const dir = tempDir("e2e-private");
    const hash = spawnSync(BIN.python3 as string, ["-W", "ignore", "-c", 'import crypt; print(crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))'], { encoding: "utf8" }).stdout.trim();
    expect(hash).toMatch(/^\$2b\$/);
    writeFileSync(join(dir, "htpasswd"), `alice:${hash}\n`);
    const reg = await startRegistry(join(dir, "registry"), join(dir, "htpasswd"));
    const basic = `Basic ${Buffer.from("alice:s3cret").toString("base64")}`;
    const image = await pushImage(reg.port, "private/app", "v1", basic);
    const peer = daemons[1] as DaemonHandle;
    // Without credentials, the mirror answers with the registry's challenge.
    const anon = await request(`http://127.0.0.1:${peer.proxyPort}/v2/private/app/manifests/v1`, { headers: { "x-dragonfly-registry": `http://127.0.0.1:${reg.port}` } });
    await anon.body.dump();
    expect(anon.statusCode).toBe(401);
    expect(String(anon.headers["www-authenticate"])).toBe('Basic realm="e2e"');
    const ctd = await startContainerd(join(dir, "containerd"), peer.proxyPort, reg.port);
    const ref = `127.0.0.1:${reg.port}/private/app:v1`;
    const denied = await ctd.ctr(["images", "pull", "--hosts-dir", ctd.hostsDir, "--snapshotter", "native", ref]);
    expect(denied.code).not.toBe(0);
    const pull = await ctd.ctr(["images", "pull", "--hosts-dir", ctd.hostsDir, "--snapshotter", "native", "--user", "alice:s3cret", ref]);
    expect(pull.code, pull.out).toBe(0);
    expect((await ctd.ctr(["images", "ls"])).out).toContain(image.manifestDigest);
    // The blobs went through the swarm with the runtime's credentials.
    const served = blobBytes(reg.log());
    for (const l of image.layers) expect(served.get(l.digest) ?? 0, l.digest).toBeGreaterThan(0);
  });
});
