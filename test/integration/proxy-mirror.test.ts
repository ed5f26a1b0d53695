// The dfdaemon proxy against a fake registry on 127.0.0.1: registry-mirror and forward-proxy
// modes, blobs through the task pipeline with exact Range answers, registry auth passed
// through, error pages and wrong bytes never cached or served, header validation, metrics.
import { request as httpRequest, type IncomingMessage } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import { silentLogger } from "../../src/common/logger.js";
import { cleanupTempDirs, testDaemonConfig } from "../helpers/swarm.js";
import { blobContent, digestOf, get, MANIFEST, startFakeRegistry, TOKEN, type FakeRegistry } from "./proxy-fixtures.js";

const PIECE = 4 * 1024 * 1024;
const SIZE = 2 * PIECE + 12_345;

describe("proxy registry mirror", () => {
  let reg: FakeRegistry;
  let daemon: DaemonHandle;
  let content: Buffer;
  let digest: string;
  let port: number;

  beforeAll(async () => {
    reg = await startFakeRegistry();
    content = blobContent(SIZE, 11);
    digest = reg.add("library/app", { content });
    const config = testDaemonConfig({ name: "proxy-mirror", schedulers: [], overrides: { proxy: { server: { ip: "127.0.0.1", port: 0 }, registryMirror: { addr: reg.url } } } });
    daemon = await startDaemon(config, silentLogger());
    port = daemon.proxyPort;
  });

  afterAll(async () => {
    await daemon?.close();
    await reg?.close();
    cleanupTempDirs();
  });

  it("forwards manifests and the version check directly, unchanged", async () => {
    const m = await get(port, "/v2/library/app/manifests/latest");
    expect(m.status).toBe(200);
    expect(m.body.toString()).toBe(MANIFEST);
    expect(m.headers["docker-content-digest"]).toBe(digestOf(Buffer.from(MANIFEST)));
    const head = await get(port, `/v2/library/app/blobs/${digest}`, {}, "HEAD");
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe(String(SIZE));
    // HEAD is forwarded, not a P2P download: no blob bytes left the registry.
    expect(reg.blobBytes.get(digest) ?? 0).toBe(0);
  });

  it("serves a blob through the task pipeline once, then from the store", async () => {
    const first = await get(port, `/v2/library/app/blobs/${digest}`);
    expect(first.status).toBe(200);
    expect(first.complete).toBe(true);
    expect(first.body.equals(content)).toBe(true);
    expect(first.headers["x-dragonfly-task-id"]).toMatch(/^[0-9a-f]{64}$/);
    expect(first.headers["docker-content-digest"]).toBe(digest);
    expect(first.headers["x-dragonfly-task-download-finished"]).toBeUndefined();
    const served = reg.blobBytes.get(digest) ?? 0;
    expect(served).toBeLessThanOrEqual(SIZE + 16);
    // The length probe, then the whole blob streamed in one request (not one per piece).
    expect(reg.requests.filter((r) => r === `GET /v2/library/app/blobs/${digest}`).length).toBe(2);

    const again = await get(port, `/v2/library/app/blobs/${digest}`);
    expect(again.body.equals(content)).toBe(true);
    expect(again.headers["x-dragonfly-task-download-finished"]).toBe("true");
    expect(reg.blobBytes.get(digest)).toBe(served);
  });

  it("answers the Range table byte for byte, from the store and while downloading", async () => {
    const table: Array<[string, number, number, number]> = [
      // header, status, first byte, last byte (inclusive)
      ["bytes=0-99", 206, 0, 99],
      ["bytes=100-", 206, 100, SIZE - 1],
      ["bytes=-100", 206, SIZE - 100, SIZE - 1],
      [`bytes=${PIECE - 10}-${PIECE + 9}`, 206, PIECE - 10, PIECE + 9],
      [`bytes=${PIECE - 1}-${2 * PIECE}`, 206, PIECE - 1, 2 * PIECE],
      [`bytes=0-${SIZE - 1}`, 206, 0, SIZE - 1],
      [`bytes=${SIZE - 5}-${SIZE + 100}`, 206, SIZE - 5, SIZE - 1],
      [`bytes=-${SIZE + 10}`, 206, 0, SIZE - 1],
      ["bytes=5-2", 200, 0, SIZE - 1],
      [`bytes=${SIZE}-`, 416, 0, -1],
      [`bytes=${SIZE + 7}-${SIZE + 9}`, 416, 0, -1],
      ["bytes=-0", 416, 0, -1],
    ];
    const check = async (path: string, extra: Record<string, string>) => {
      for (const [range, status, a, b] of table) {
        const r = await get(port, path, { range, ...extra });
        expect(r.status, range).toBe(status);
        if (status === 416) {
          expect(r.headers["content-range"], range).toBe(`bytes */${SIZE}`);
          continue;
        }
        expect(r.body.equals(content.subarray(a, b + 1)), range).toBe(true);
        if (status === 206) expect(r.headers["content-range"], range).toBe(`bytes ${a}-${b}/${SIZE}`);
        expect(Number(r.headers["content-length"]), range).toBe(b - a + 1);
      }
    };
    // From the stored task.
    await check(`/v2/library/app/blobs/${digest}`, {});
    // A fresh blob with prefetch: ranges come from the pieces as they land, and the whole blob
    // ends up stored.
    const fresh = blobContent(SIZE, 12);
    const freshDigest = reg.add("library/app", { content: fresh });
    content = fresh;
    await check(`/v2/library/app/blobs/${freshDigest}`, { "x-dragonfly-prefetch": "true" });
    const stored = await get(port, `/v2/library/app/blobs/${freshDigest}`);
    expect(stored.body.equals(fresh)).toBe(true);
    expect(reg.blobBytes.get(freshDigest) ?? 0).toBeLessThanOrEqual(SIZE + 16);
  });

  it("fetches only the range from the registry for a lazy read without prefetch", async () => {
    const lazy = blobContent(SIZE, 13);
    const d = reg.add("library/app", { content: lazy });
    const r = await get(port, `/v2/library/app/blobs/${d}`, { range: `bytes=${PIECE + 1}-${PIECE + 1000}` });
    expect(r.status).toBe(206);
    expect(r.body.equals(lazy.subarray(PIECE + 1, PIECE + 1001))).toBe(true);
    expect(reg.blobBytes.get(d)).toBe(1000);
  });

  it("streams a blob while its pieces are still arriving", async () => {
    const slow = blobContent(SIZE, 14);
    const d = reg.add("library/app", { content: slow, gateFrom: PIECE });
    const received = await new Promise<{ early: number; all: Buffer }>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let early = -1;
      const req = httpRequest({ host: "127.0.0.1", port, path: `/v2/library/app/blobs/${d}`, agent: false }, (res) => {
        res.on("data", (c: Buffer) => {
          chunks.push(c);
          const have = chunks.reduce((s, x) => s + x.length, 0);
          // Piece 0 arrived while the registry still holds back pieces 1 and 2.
          if (early < 0 && have >= PIECE) {
            early = have;
            reg.release();
          }
        });
        res.on("end", () => resolve({ early, all: Buffer.concat(chunks) }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
    expect(received.early).toBeGreaterThanOrEqual(PIECE);
    expect(received.all.equals(slow)).toBe(true);
  });

  it("passes 401 and WWW-Authenticate through, never caches them, and serves the blob with the token", async () => {
    const secret = blobContent(PIECE + 100, 15);
    const d = reg.add("private/app", { content: secret, private: true });
    const path = `/v2/private/app/blobs/${d}`;
    for (let i = 0; i < 2; i++) {
      const denied = await get(port, path);
      expect(denied.status).toBe(401);
      expect(denied.headers["www-authenticate"]).toBe(`Bearer realm="${reg.url}/token",service="fake",scope="repository:private/app:pull"`);
      expect(denied.headers["x-dragonfly-error-type"]).toBe("backend");
    }
    const manifest = await get(port, "/v2/private/app/manifests/latest");
    expect(manifest.status).toBe(401);
    expect(manifest.headers["www-authenticate"]).toContain("Bearer realm=");
    expect(manifest.body.toString()).toContain("UNAUTHORIZED");
    const ok = await get(port, path, { authorization: `Bearer ${TOKEN}` });
    expect(ok.status).toBe(200);
    expect(ok.body.equals(secret)).toBe(true);
  });

  it("never caches an error page as a blob", async () => {
    const real = blobContent(PIECE + 5, 16);
    const d = reg.add("library/app", { content: real, failWith: 503 });
    const page = await get(port, `/v2/library/app/blobs/${d}`);
    expect(page.status).toBe(503);
    expect(page.body.toString()).not.toContain("<html>");
    const blob = reg.blob(d);
    if (blob) blob.failWith = undefined;
    const good = await get(port, `/v2/library/app/blobs/${d}`);
    expect(good.status).toBe(200);
    expect(good.body.equals(real)).toBe(true);
  });

  it("lets a first pull finish while its client has stopped reading, then serves that client in full", async () => {
    const big = blobContent(8 * PIECE + 4321, 23);
    const d = reg.add("library/app", { content: big });
    const chunks: Buffer[] = [];
    let onPaused!: (res: IncomingMessage) => void;
    const paused = new Promise<IncomingMessage>((r) => (onPaused = r));
    const ended = new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: "127.0.0.1", port, path: `/v2/library/app/blobs/${d}`, agent: false }, (res) => {
        res.once("data", (c: Buffer) => {
          chunks.push(c);
          res.pause();
          res.on("data", (more: Buffer) => chunks.push(more));
          onPaused(res);
        });
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
    const res = await paused;
    // The client takes nothing more, yet the task completes: the download never waits for it.
    const taskOf = () => daemon.storage.list().find((t) => t.meta.url.endsWith(d));
    for (let i = 0; i < 400 && taskOf()?.meta.state !== "succeeded"; i++) await new Promise((r) => setTimeout(r, 25));
    expect(taskOf()?.meta.state).toBe("succeeded");
    res.resume();
    expect(await ended).toBe(200);
    expect(Buffer.concat(chunks).equals(big)).toBe(true);
  });

  it("never serves a blob whose bytes do not match its digest, and does not keep it", async () => {
    const real = blobContent(SIZE, 17);
    const lie = Buffer.from(real);
    lie.write("<html>not a layer</html>", PIECE + 3);
    const d = reg.add("library/app", { content: real, lie });
    for (let i = 0; i < 2; i++) {
      const r = await get(port, `/v2/library/app/blobs/${d}`);
      // Either refused outright or cut before the end: never a complete body.
      expect(r.status === 200 ? r.complete : true).toBe(false);
      expect(r.body.length).toBeLessThan(SIZE);
    }
    await new Promise((r) => setTimeout(r, 50));
    const task = daemon.storage.list().find((t) => t.meta.url.endsWith(d));
    expect(task === undefined || task.meta.state !== "succeeded").toBe(true);
  });

  it("works as a plain forward proxy for absolute-form URLs", async () => {
    const m = await get(port, `${reg.url}/v2/library/app/manifests/latest`);
    expect(m.status).toBe(200);
    expect(m.body.toString()).toBe(MANIFEST);
    const fwd = blobContent(PIECE + 77, 18);
    const d = reg.add("library/app", { content: fwd });
    const b = await get(port, `${reg.url}/v2/library/app/blobs/${d}`);
    expect(b.status).toBe(200);
    expect(b.headers["x-dragonfly-task-id"]).toBeDefined();
    expect(b.body.equals(fwd)).toBe(true);
  });

  it("takes the upstream from X-Dragonfly-Registry, then from containerd's ns parameter", async () => {
    const other = await startFakeRegistry();
    try {
      const blob = blobContent(1000, 19);
      const d = other.add("library/x", { content: blob });
      const viaHeader = await get(port, `/v2/library/x/blobs/${d}`, { "x-dragonfly-registry": other.url });
      expect(viaHeader.status).toBe(200);
      expect(viaHeader.body.equals(blob)).toBe(true);
      const viaNs = await get(port, `/v2/library/x/manifests/latest?ns=${encodeURIComponent(other.url)}`);
      expect(viaNs.status).toBe(200);
      expect(other.requests).toContain(`GET /v2/library/x/manifests/latest?ns=${encodeURIComponent(other.url)}`);
    } finally {
      await other.close();
    }
  });

  it("refuses bad X-Dragonfly headers with 4xx naming the header", async () => {
    const path = `/v2/library/app/blobs/${digest}`;
    const out = await get(port, path, { "x-dragonfly-output-path": "/etc/passwd" });
    expect(out.status).toBe(403);
    expect(out.body.toString()).toMatch(/X-Dragonfly-Output-Path/i);
    for (const [h, v] of [
      ["x-dragonfly-priority", "9"],
      ["x-dragonfly-piece-length", "1b"],
      ["x-dragonfly-piece-length", "abc"],
      ["x-dragonfly-piece-length", "1tib"],
      ["x-dragonfly-use-p2p", "maybe"],
      ["x-dragonfly-registry", "ftp://example.com"],
    ] as const) {
      const r = await get(port, path, { [h]: v });
      expect(r.status, `${h}: ${v}`).toBe(400);
      expect(r.headers["x-dragonfly-error-type"]).toBe("proxy");
      expect(r.body.toString().toLowerCase()).toContain(h);
    }
  });

  it("refuses upstreams chosen by clients that the SSRF policy forbids", async () => {
    const r = await get(port, "/v2/library/app/manifests/latest", { "x-dragonfly-registry": "http://169.254.169.254" });
    expect(r.status).toBe(403);
    expect(r.body.toString()).toMatch(/SSRF/);
  });

  it("counts requests in dragonfly_client_proxy_request_*", async () => {
    const text = await (await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1] ?? "NaN");
    // Requests by scheme and method, as Dragonfly's 1.5 client counts them: a mirror's are http.
    expect(Number(/^dragonfly_client_proxy_request_total\{scheme="http",method="GET"\} (\d+)/m.exec(text)?.[1] ?? "NaN")).toBeGreaterThan(20);
    expect(value("dragonfly_client_proxy_request_via_dfdaemon_total")).toBeGreaterThan(10);
    expect(value("dragonfly_client_proxy_request_failure_total")).toBeGreaterThan(3);
    // The proxy's own refusals by reason; the registry's 401s and 503 passed through are not among them.
    const refused = (reason: string) => Number(new RegExp(`^dragonfly_client_proxy_request_refused_total\\{reason="${reason}"\\} (\\d+)`, "m").exec(text)?.[1] ?? "NaN");
    expect(refused("bad_request")).toBe(6);
    expect(refused("forbidden")).toBe(1);
    expect(refused("ssrf")).toBe(1);
    expect(refused("auth")).toBe(0);
  });
});
