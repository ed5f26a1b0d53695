// `damselfly doctor --mirror` against Debian's docker-registry on plain HTTP 127.0.0.1 and a
// daemon's proxy: the manifest through the catch-all (`?ns=`), the config blob and the
// smallest layer through the swarm with their digests checked; and the failures an operator
// must be told about (no proxy listening, the mirror refusing), each with what to fix.
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { main } from "../../src/cli/damselfly.js";
import { checkMirror, DEFAULT_PROXY_ADDR, defaultProxyAddr, formatMirrorReport, parseImageRef } from "../../src/cli/doctor-mirror.js";
import { silentLogger } from "../../src/common/logger.js";
import { startDaemon, type DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { pushImage, REGISTRY_BIN, REGISTRY_SKIP, startRealRegistry, type PushedImage, type RealRegistry } from "../helpers/registry.js";
import { cleanupTempDirs, startTestScheduler, tempDir, testDaemonConfig } from "../helpers/swarm.js";

if (!REGISTRY_BIN) console.warn(`cli-doctor-mirror: ${REGISTRY_SKIP}`);

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("doctor --mirror image references", () => {
  it.each([
    ["127.0.0.1:5000/e2e/app:v1", { registry: "127.0.0.1:5000", repository: "e2e/app", reference: "v1" }],
    ["harbor.example.com/team/deep/app", { registry: "harbor.example.com", repository: "team/deep/app", reference: "latest" }],
    [`localhost/app@sha256:${"a".repeat(64)}`, { registry: "localhost", repository: "app", reference: `sha256:${"a".repeat(64)}` }],
    ["ubuntu:24.04", { registry: "docker.io", repository: "library/ubuntu", reference: "24.04" }],
  ])("%s", (ref, want) => {
    expect(parseImageRef(ref)).toEqual(want);
  });
  it("defaults --proxy-addr to the proxy of a running damselfly up, else to 4001", () => {
    const dir = tempDir("doctor-mirror-up");
    expect(defaultProxyAddr(dir)).toBe(DEFAULT_PROXY_ADDR);
    mkdirSync(join(dir, ".damselfly"));
    const up = { pid: process.pid, dataDir: join(dir, ".damselfly"), socket: join(dir, ".damselfly", "dfdaemon.sock"), proxy: "http://127.0.0.1:14001", manager: "http://127.0.0.1:18080" };
    writeFileSync(join(dir, ".damselfly", "endpoint.json"), JSON.stringify(up));
    expect(defaultProxyAddr(join(dir, ".damselfly"))).toBe("http://127.0.0.1:14001");
  });
  it("refuses what is not an image reference", () => {
    expect(() => parseImageRef("http://127.0.0.1:5000/app")).toThrow(/not an image reference/);
    expect(() => parseImageRef("Host/App:v1")).toThrow(/not an image reference/);
  });
});

(REGISTRY_BIN ? describe : describe.skip)(REGISTRY_BIN ? "damselfly doctor --mirror" : REGISTRY_SKIP, () => {
  let registry: RealRegistry;
  let image: PushedImage;
  let scheduler: SchedulerHandle;
  let daemon: DaemonHandle;
  let proxyAddr: string;
  let ref: string;

  beforeAll(async () => {
    registry = await startRealRegistry(tempDir("doctor-mirror-registry"));
    image = await pushImage(registry.port, "e2e/app", "v1", { layers: 3, layerBytes: 3 * 1024 * 1024 });
    scheduler = await startTestScheduler();
    const config = testDaemonConfig({ name: "doctor-mirror", schedulers: [`127.0.0.1:${scheduler.grpcPort}`], overrides: { proxy: { server: { ip: "127.0.0.1", port: 0 } } } });
    daemon = await startDaemon(config, silentLogger());
    proxyAddr = `http://127.0.0.1:${daemon.proxyPort}`;
    ref = `127.0.0.1:${registry.port}/e2e/app:v1`;
  });

  afterAll(async () => {
    await daemon?.close();
    await scheduler?.close();
    await registry?.stop();
    cleanupTempDirs();
  });

  it("pulls index, amd64 manifest, config and the smallest layer through the mirror and the swarm", async () => {
    const r = await checkMirror({ image: ref, proxyAddr });
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    const [config, ...layers] = image.blobs.amd64 ?? [];
    expect(r.fetches.map((f) => [f.what, f.status])).toEqual([
      ["index", 200],
      ["manifest", 200],
      ["config", 200],
      ["layer", 200],
    ]);
    const [, manifest, cfg, layer] = r.fetches;
    expect(manifest?.digestOk).toBe(true);
    expect(cfg).toMatchObject({ path: `blobs/${config}`, swarm: true, digestOk: true, bytes: image.contents.get(config ?? "")?.length });
    expect(cfg?.taskId).toMatch(/^[0-9a-f]{64}$/);
    // Layers are the same size here: the first of the smallest.
    expect(layer).toMatchObject({ path: `blobs/${layers[0]}`, swarm: true, digestOk: true, bytes: 3 * 1024 * 1024 });
    expect(formatMirrorReport(r)).toMatch(/doctor: the mirror serves .* through the swarm$/);
  });

  it("fails with what to fix when nothing listens at the proxy address", async () => {
    const r = await checkMirror({ image: ref, proxyAddr: `http://127.0.0.1:${await deadPort()}` });
    expect(r.ok).toBe(false);
    expect(r.fetches).toHaveLength(1);
    expect(r.fetches[0]?.status).toBe(0);
    expect(r.problems[0]).toMatch(/cannot reach the proxy at http:\/\/127\.0\.0\.1:\d+ .*ECONNREFUSED.*--proxy-addr/);
  });

  it("fails when the mirror refuses, quoting the proxy's reason", async () => {
    const r = await checkMirror({ image: `127.0.0.1:${await deadPort()}/e2e/app:v1`, proxyAddr });
    expect(r.ok).toBe(false);
    expect(r.fetches[0]).toMatchObject({ what: "manifest", status: 502, errorType: "proxy" });
    expect(r.problems[0]).toMatch(/the mirror refused the manifest with 502: .*cannot reach registry.*containerd would pull from 127\.0\.0\.1:\d+ directly/);
  });

  it("exits 1 from the CLI and prints the report as JSON", async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out.push(String(chunk));
      return true;
    });
    try {
      const good = await main(["doctor", "--mirror", ref, "--proxy-addr", proxyAddr, "--json"]);
      expect(good).toBe(0);
      expect(JSON.parse(out.join(""))).toMatchObject({ ok: true, registry: `127.0.0.1:${registry.port}` });
      out.length = 0;
      const bad = await main(["doctor", "--mirror", ref, "--proxy-addr", `http://127.0.0.1:${await deadPort()}`]);
      expect(bad).toBe(1);
      expect(out.join("")).toMatch(/doctor: FAIL: cannot reach the proxy/);
    } finally {
      spy.mockRestore();
      process.exitCode = undefined;
    }
  });
});
