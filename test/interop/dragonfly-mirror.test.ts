// Case 5 of issue 19: Dragonfly's dfdaemon is containerd's registry mirror and our seed peer is
// behind it. containerd (Debian's, configured by `damselfly init containerd` pointing at the
// Dragonfly proxy) pulls an image from Debian's docker-registry; the blobs go through the
// Dragonfly daemon's P2P path under our scheduler, so our seed peer fetches them from the
// registry and the Dragonfly daemon takes the pieces from it. Needs root (containerd unpacks
// with chown), docker-registry and containerd; a missing one fails the test.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runInit } from "../../src/cli/commands/init.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { blobBytes, Processes, pushLayeredImage, requireRoot, startContainerd, startLoggedRegistry, unpackedMismatches, writeContainerdConfig } from "../helpers/containerd.js";
import { cleanupTempDirs, tempDir } from "../helpers/swarm.js";
import { dragonflyBinDir, startDragonflyDaemon, type DragonflyDaemon } from "../helpers/dragonfly.js";
import { startOurStack, type OurStack } from "./harness/stack.js";

const PIECE = 4 * 1024 * 1024;
const procs = new Processes();

describe("a Dragonfly dfdaemon as containerd's registry mirror, our seed peer behind it", () => {
  let stack: OurStack;
  let dragonfly: DragonflyDaemon | undefined;

  beforeAll(async () => {
    requireRoot("dragonfly-mirror");
    dragonflyBinDir();
    stack = await startOurStack();
  });

  afterAll(async () => {
    await procs.stopAll();
    await dragonfly?.stop("SIGKILL");
    await stack?.close();
    cleanupTempDirs();
  });

  it("5. containerd pulls an image through the Dragonfly proxy; the blobs come from our seed peer, the registry sends each about once", async () => {
    const reg = await startLoggedRegistry(procs, tempDir("interop-registry"));
    const image = await pushLayeredImage(reg.base, "interop/app", "v1", { layerMiB: [1, 12, 20] });
    const registryAddr = `http://127.0.0.1:${reg.port}`;
    dragonfly = await startDragonflyDaemon({ name: "df-mirror", dir: tempDir("interop-df-mirror"), managerAddr: stack.managerAddr, registryMirror: registryAddr });

    const dir = tempDir("interop-containerd");
    const config = writeContainerdConfig(dir);
    const hostsDir = join(dir, "certs.d");
    await runInit({ runtime: "containerd", configPath: config, hostsDir, proxyAddr: `http://127.0.0.1:${dragonfly.ports.proxy}`, registries: [`127.0.0.1:${reg.port}=${registryAddr}`] });
    const ctd = await startContainerd(procs, dir);
    const before = blobBytes(reg.log());
    const pull = await ctd.ctr(["images", "pull", "--hosts-dir", hostsDir, "--snapshotter", "native", `127.0.0.1:${reg.port}/interop/app:v1`]);
    expect(pull.code, `${pull.out}\n${dragonfly.output().slice(-3000)}`).toBe(0);
    expect((await ctd.ctr(["images", "check"])).out).toMatch(/complete \(\d+\/\d+\)/);
    expect(unpackedMismatches(ctd.root, image.files)).toEqual([]);
    // Blobs of more than one piece went through the swarm: our seed peer holds them whole and
    // the registry sent each about once.
    const after = blobBytes(reg.log());
    const seed = stack.seed as DaemonHandle;
    const held = new Set(seed.storage.list().filter((t) => t.meta.state === "succeeded").map((t) => t.meta.contentLength));
    for (const l of image.layers) {
      const sent = (after.get(l.digest) ?? 0) - (before.get(l.digest) ?? 0);
      expect(sent, l.digest).toBeGreaterThan(0);
      if (l.size > PIECE) {
        expect(sent, l.digest).toBeLessThanOrEqual(Math.ceil(1.05 * l.size) + 1024);
        expect(held.has(l.size), `our seed holds the ${l.size}-byte blob`).toBe(true);
      }
    }
  });
});
