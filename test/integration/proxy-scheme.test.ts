// containerd's catch-all mirror against a plain-HTTP registry: Debian's docker-registry on
// 127.0.0.1, pulled through a daemon's proxy with `?ns=127.0.0.1:PORT` and no header, as
// `damselfly init containerd`'s `_default/hosts.toml` makes containerd do. The proxy learns
// that the registry speaks plain HTTP and the blobs go through the swarm; a request it
// refuses is counted by reason and logged (without its query) so the bypass is noticed.
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { pushImage, REGISTRY_BIN, REGISTRY_SKIP, startRealRegistry, type PushedImage, type RealRegistry } from "../helpers/registry.js";
import { cleanupTempDirs, startTestScheduler, tempDir, testDaemonConfig } from "../helpers/swarm.js";

if (!REGISTRY_BIN) console.warn(`proxy-scheme: ${REGISTRY_SKIP}`);

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** A logger whose JSON lines the test can read. */
function capturingLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split("\n")) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: "info" }, sink), lines };
}

async function refusedCount(metricsPort: number, reason: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = new RegExp(`^dragonfly_client_proxy_request_refused_total\\{reason="${reason}"\\} (\\d+)`, "m").exec(text);
  return Number(m?.[1] ?? "NaN");
}

const INDEX_ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

(REGISTRY_BIN ? describe : describe.skip)(REGISTRY_BIN ? "proxy: scheme of registries named without one" : REGISTRY_SKIP, () => {
  let registry: RealRegistry;
  let image: PushedImage;
  let scheduler: SchedulerHandle;
  let daemon: DaemonHandle;
  let strict: DaemonHandle;
  let captured: ReturnType<typeof capturingLogger>;
  let ns: string;

  beforeAll(async () => {
    registry = await startRealRegistry(tempDir("proxy-scheme-registry"));
    // A layer of two pieces (4 MiB each), so it really is assembled from the swarm's pieces.
    image = await pushImage(registry.port, "e2e/app", "v1", { layers: 2, layerBytes: 5 * 1024 * 1024 + 77 });
    ns = encodeURIComponent(`127.0.0.1:${registry.port}`);
    scheduler = await startTestScheduler();
    captured = capturingLogger();
    // The default mirror addr (index.docker.io) and no registries list: only the probe can tell
    // that 127.0.0.1:PORT is plain HTTP. Loopback is allowed for back-to-source here.
    const config = testDaemonConfig({ name: "proxy-scheme", schedulers: [`127.0.0.1:${scheduler.grpcPort}`], overrides: { proxy: { server: { ip: "127.0.0.1", port: 0 } } } });
    daemon = await startDaemon(config, captured.log);
    // No SSRF allowance: loopback registries are reachable only when the operator lists them.
    const strictConfig = testDaemonConfig({
      name: "proxy-scheme-strict",
      schedulers: [`127.0.0.1:${scheduler.grpcPort}`],
      overrides: { security: { allowedBackToSourceCIDRs: [] }, proxy: { server: { ip: "127.0.0.1", port: 0 }, registryMirror: { registries: [`http://localhost:${registry.port}`] } } },
    });
    strict = await startDaemon(strictConfig, pino({ level: "silent" }));
  });

  afterAll(async () => {
    await strict?.close();
    await daemon?.close();
    await scheduler?.close();
    await registry?.stop();
    cleanupTempDirs();
  });

  it("pulls the index, the manifest and the blobs of a plain-HTTP registry named only by ns, blobs through the swarm", async () => {
    const index = await get(daemon.proxyPort, `/v2/e2e/app/manifests/v1?ns=${ns}`, { accept: INDEX_ACCEPT });
    expect(index.status, index.body.toString()).toBe(200);
    const entries = (JSON.parse(index.body.toString()) as { manifests: Array<{ digest: string; platform: { architecture: string } }> }).manifests;
    const amd64 = entries.find((e) => e.platform.architecture === "amd64");
    expect(amd64).toBeDefined();
    const manifest = await get(daemon.proxyPort, `/v2/e2e/app/manifests/${amd64?.digest}?ns=${ns}`, { accept: INDEX_ACCEPT });
    expect(manifest.status).toBe(200);
    expect(manifest.headers["docker-content-digest"]).toBe(amd64?.digest);
    for (const digest of image.blobs.amd64 ?? []) {
      const blob = await get(daemon.proxyPort, `/v2/e2e/app/blobs/${digest}?ns=${ns}`);
      expect(blob.status, digest).toBe(200);
      expect(blob.headers["x-dragonfly-task-id"], digest).toMatch(/^[0-9a-f]{64}$/);
      expect(blob.body.equals(image.contents.get(digest) ?? Buffer.alloc(1)), digest).toBe(true);
    }
    // The task downloaded from the learned http:// URL.
    const urls = daemon.storage.list().map((t) => t.meta.url);
    expect(urls).toContain(`http://127.0.0.1:${registry.port}/v2/e2e/app/blobs/${image.blobs.amd64?.[1]}?ns=${ns}`);
    // A scheme-less X-Dragonfly-Registry learns the same way (cached by now).
    const viaHeader = await get(daemon.proxyPort, `/v2/e2e/app/blobs/${image.blobs.arm64?.[0]}`, { "x-dragonfly-registry": `127.0.0.1:${registry.port}` });
    expect(viaHeader.status).toBe(200);
    expect(viaHeader.headers["x-dragonfly-task-id"]).toBeDefined();
  });

  it("refuses a malformed X-Dragonfly-Registry with 400, counts it under bad_request and logs it without the query", async () => {
    const before = await refusedCount(daemon.metricsPort, "bad_request");
    expect(before).toBeGreaterThanOrEqual(0);
    const r = await get(daemon.proxyPort, `/v2/e2e/app/manifests/v1?ns=${ns}&token=s3cret`, { "x-dragonfly-registry": "not a registry" });
    expect(r.status).toBe(400);
    expect(r.headers["x-dragonfly-error-type"]).toBe("proxy");
    expect(r.body.toString()).toContain("x-dragonfly-registry");
    expect(await refusedCount(daemon.metricsPort, "bad_request")).toBe(before + 1);
    const line = captured.lines.find((l) => l.reason === "bad_request");
    expect(line).toMatchObject({ level: 40, method: "GET", url: "/v2/e2e/app/manifests/v1", status: 400, reason: "bad_request" });
    expect(String(line?.msg)).toMatch(/proxy refused a request/);
    expect(JSON.stringify(captured.lines)).not.toContain("s3cret");
  });

  it("counts an unreachable scheme-less registry under upstream_unreachable with a 502 naming it", async () => {
    const before = await refusedCount(daemon.metricsPort, "upstream_unreachable");
    const r = await get(daemon.proxyPort, `/v2/e2e/app/manifests/v1?ns=127.0.0.1:1`);
    expect(r.status).toBe(502);
    expect(r.body.toString()).toMatch(/cannot reach registry 127\.0\.0\.1:1/);
    expect(await refusedCount(daemon.metricsPort, "upstream_unreachable")).toBe(before + 1);
  });

  it("probes through the SSRF-checked dispatcher, and reaches a listed registry as the operator's", async () => {
    // 127.0.0.1 is not listed and loopback is not allowlisted: the probe itself is refused.
    const probe = await get(strict.proxyPort, `/v2/e2e/app/manifests/v1?ns=${ns}`, { accept: INDEX_ACCEPT });
    expect(probe.status).toBe(403);
    expect(probe.body.toString()).toMatch(/SSRF/);
    expect(await refusedCount(strict.metricsPort, "ssrf")).toBe(1);
    // localhost:PORT is listed as http://: its scheme comes from the list, no probe, no SSRF check.
    const digest = image.blobs.amd64?.[1] ?? "";
    const blob = await get(strict.proxyPort, `/v2/e2e/app/blobs/${digest}?ns=${encodeURIComponent(`localhost:${registry.port}`)}`);
    expect(blob.status, blob.body.toString()).toBe(200);
    expect(blob.headers["x-dragonfly-task-id"]).toBeDefined();
    expect(blob.body.equals(image.contents.get(digest) ?? Buffer.alloc(1))).toBe(true);
  });
});
