// containerd 1.6 (Debian) pulls an image through the dfdaemon registry mirror, configured by
// `damselfly init containerd`: Debian's docker-registry serves an image this test builds and
// pushes (three uncompressed layers, tens of MiB); two peers, each with its own containerd,
// pull it through their own proxy, so the registry's access log shows each blob served about
// once; the unpacked files match. A second registry with htpasswd auth checks that the 401
// challenge passes through the mirror and the pull with credentials succeeds.
//
// Needs root (containerd unpacks with chown) and Debian's docker-registry, containerd (ctr) and
// python3 (bcrypt for htpasswd); a missing one fails the test (test/helpers/containerd.ts).
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runInit } from "../../src/cli/commands/init.js";
import { silentLogger } from "../../src/common/logger.js";
import { startDaemon, type DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { blobBytes, Processes, pushLayeredImage, requireBin, requireRoot, startContainerd, startLoggedRegistry, unpackedMismatches, writeContainerdConfig, type Containerd } from "../helpers/containerd.js";
import { cleanupTempDirs, startTestDaemon, startTestScheduler, tempDir, testDaemonConfig } from "../helpers/swarm.js";

const procs = new Processes();

/** A private containerd whose hosts directory has a per-registry entry for the registry (init --registry). */
async function containerdFor(dir: string, proxyPort: number, registryPort: number): Promise<Containerd & { hostsDir: string }> {
  const config = writeContainerdConfig(dir);
  const hostsDir = join(dir, "certs.d");
  const result = await runInit({ runtime: "containerd", configPath: config, hostsDir, proxyAddr: `http://127.0.0.1:${proxyPort}`, registries: [`127.0.0.1:${registryPort}=http://127.0.0.1:${registryPort}`] });
  expect(result.changes.map((c) => c.path)).toContain(join(hostsDir, `127.0.0.1:${registryPort}`, "hosts.toml"));
  return { ...(await startContainerd(procs, dir)), hostsDir };
}

describe("containerd pulls through the dfdaemon registry mirror", () => {
  let scheduler: SchedulerHandle;
  const daemons: DaemonHandle[] = [];

  beforeAll(async () => {
    requireRoot("proxy-containerd");
    scheduler = await startTestScheduler();
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    daemons.push(await startTestDaemon({ name: "e2e-seed", schedulers: [addr], seed: true }));
    for (let i = 0; i < 2; i++) {
      daemons.push(await startDaemon(testDaemonConfig({ name: `e2e-peer-${i}`, schedulers: [addr], overrides: { proxy: { server: { ip: "127.0.0.1", port: 0 } } } }), silentLogger()));
    }
  });

  afterAll(async () => {
    await procs.stopAll();
    for (const d of daemons) await d.close();
    await scheduler?.close();
    cleanupTempDirs();
  });

  it("pulls an image with two containerds through two peers; the registry serves each blob about once", async () => {
    const reg = await startLoggedRegistry(procs, tempDir("e2e-registry"));
    const image = await pushLayeredImage(reg.base, "e2e/app", "v1");
    const ref = `127.0.0.1:${reg.port}/e2e/app:v1`;
    const before = blobBytes(reg.log());
    for (const [i, peer] of daemons.slice(1).entries()) {
      const ctd = await containerdFor(tempDir(`e2e-containerd-${i}`), peer.proxyPort, reg.port);
      const pull = await ctd.ctr(["images", "pull", "--hosts-dir", ctd.hostsDir, "--snapshotter", "native", ref]);
      expect(pull.code, pull.out).toBe(0);
      const ls = await ctd.ctr(["images", "ls"]);
      expect(ls.out).toContain(image.manifestDigest);
      const check = await ctd.ctr(["images", "check"]);
      expect(check.out).toMatch(/complete \(\d+\/\d+\)/);
      // The unpacked root filesystem holds the bytes we put in the layers.
      expect(unpackedMismatches(ctd.root, image.files)).toEqual([]);
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

  it("pulls from a private registry (htpasswd) with the 401 challenge passed through the mirror", async () => {
    const dir = tempDir("e2e-private");
    const hash = spawnSync(requireBin("python3"), ["-W", "ignore", "-c", 'import crypt; print(crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))'], { encoding: "utf8" }).stdout.trim();
    expect(hash).toMatch(/^\$2b\$/);
    writeFileSync(join(dir, "htpasswd"), `alice:${hash}\n`);
    const reg = await startLoggedRegistry(procs, join(dir, "registry"), { htpasswd: join(dir, "htpasswd") });
    const basic = `Basic ${Buffer.from("alice:s3cret").toString("base64")}`;
    const image = await pushLayeredImage(reg.base, "private/app", "v1", { authHeader: basic });
    const peer = daemons[1] as DaemonHandle;
    // Without credentials, the mirror answers with the registry's challenge.
    const anon = await request(`http://127.0.0.1:${peer.proxyPort}/v2/private/app/manifests/v1`, { headers: { "x-dragonfly-registry": `http://127.0.0.1:${reg.port}` } });
    await anon.body.dump();
    expect(anon.statusCode).toBe(401);
    expect(String(anon.headers["www-authenticate"])).toBe('Basic realm="e2e"');
    const ctd = await containerdFor(join(dir, "containerd"), peer.proxyPort, reg.port);
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
