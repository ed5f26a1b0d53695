// Back-to-source from plain-http origins goes through the native origin client (bytes never
// pass through JS); https-less edge cases keep the undici path: origins without Range. Redirects
// are resolved at stat time, credentials do not follow a redirect to another origin, remote-
// triggered downloads are SSRF-checked before the native client connects, and an origin's
// refusal keeps its status and headers.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SsrfPolicy } from "../../src/common/ssrf.js";
import { BackendError } from "../../src/daemon/backend/index.js";
import { HttpBackend, headersAfterRedirect } from "../../src/daemon/backend/http.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { Download, TaskType } from "../../src/gen/common/v2/common.js";
import { openTaskStore, originStats } from "../../src/native/index.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";
import { rejection } from "../helpers/rejection.js";

const MiB = 1024 * 1024;
const SIZE = 18 * MiB + 12345; // 5 pieces of 4 MiB

const failure = (p: Promise<unknown>) => rejection(p, (e): e is BackendError => e instanceof BackendError);

describe("daemon back-to-source through the native origin client", () => {
  let origin: Origin;
  let redirector: Server;
  let redirectorUrl: string;
  const redirectorSaw: Array<string | undefined> = [];
  let daemon: DaemonHandle;
  const out = tempDir("origin-native");

  beforeAll(async () => {
    origin = await startOrigin(makeContent(SIZE, 11));
    // Another origin (another port) that redirects every request to the real one.
    redirector = createServer((req, res) => {
      redirectorSaw.push(req.headers.authorization);
      res.writeHead(302, { location: origin.url() }).end();
    });
    await new Promise<void>((r) => redirector.listen(0, "127.0.0.1", () => r()));
    redirectorUrl = `http://127.0.0.1:${(redirector.address() as AddressInfo).port}/file.bin`;
    daemon = await startTestDaemon({ name: "origin-native", schedulers: [] });
  });

  afterAll(async () => {
    await daemon?.close();
    await origin?.close();
    redirector?.closeAllConnections();
    await new Promise((r) => redirector?.close(r));
    cleanupTempDirs();
  });

  it("fetches every piece of an http origin natively, with ranged GETs", async () => {
    const before = originStats();
    const served = origin.bytesServed;
    const r = await downloadVia(daemon.socketPath, { url: origin.url("/file.bin?case=native"), outputPath: join(out, "native") });
    expect(r.contentLength).toBe(SIZE);
    expect(sha256File(join(out, "native"))).toBe(origin.sha256);
    const after = originStats();
    expect(after.pieces - before.pieces).toBe(5);
    expect(after.bytes - before.bytes).toBe(SIZE);
    // The 1-byte stat plus each byte once.
    expect(origin.bytesServed - served).toBe(SIZE + 1);
  });

  it("keeps the JS path for an origin without Range support", async () => {
    origin.rangeSupport = false;
    try {
      const before = originStats();
      await downloadVia(daemon.socketPath, { url: origin.url("/file.bin?case=norange"), outputPath: join(out, "norange") });
      expect(sha256File(join(out, "norange"))).toBe(origin.sha256);
      expect(originStats().pieces).toBe(before.pieces);
    } finally {
      origin.rangeSupport = true;
    }
  });

  it("follows a redirect at stat time and sends the pieces to the final URL without the credentials", async () => {
    const before = originStats();
    redirectorSaw.length = 0;
    await downloadVia(daemon.socketPath, { url: `${redirectorUrl}?case=redirect`, outputPath: join(out, "redirect"), requestHeader: { Authorization: "Bearer secret" } });
    expect(sha256File(join(out, "redirect"))).toBe(origin.sha256);
    expect(originStats().pieces - before.pieces).toBe(5);
    // Only the stat went to the redirecting origin, with the credentials meant for it.
    expect(redirectorSaw).toEqual(["Bearer secret"]);
    expect(headersAfterRedirect(redirectorUrl, origin.url(), { Authorization: "x", Cookie: "c", Host: "h", "X-Keep": "k" })).toEqual({ "X-Keep": "k" });
    expect(headersAfterRedirect(redirectorUrl, `${redirectorUrl}?b`, { Authorization: "x" })).toEqual({ Authorization: "x" });
  });

  it("refuses remote-triggered downloads the SSRF policy forbids before connecting natively", async () => {
    const strict = new HttpBackend({ maxRetries: 0, ssrf: new SsrfPolicy() });
    try {
      for (const url of [origin.url(), origin.url().replace("127.0.0.1", "localhost")]) {
        const e = await failure(strict.route(url, url, {}));
        expect(e.message).toMatch(/not allowed by the SSRF policy/);
      }
      const allowed = new HttpBackend({ maxRetries: 0, ssrf: new SsrfPolicy({ allowCidrs: ["127.0.0.0/8"] }) });
      const route = await allowed.route(origin.url().replace("127.0.0.1", "localhost"), origin.url(), { "X-A": "1", Range: "bytes=1-2", Connection: "close" });
      expect(route).toMatchObject({ addr: `127.0.0.1:${new URL(origin.url()).port}`, host: `localhost:${new URL(origin.url()).port}`, path: "/file.bin", headers: { "x-a": "1" } });
      expect(route?.headers).not.toHaveProperty("range");
      expect(await allowed.route("https://example.com/x", "https://example.com/x", {})).toBeUndefined();
      await allowed.close();
    } finally {
      await strict.close();
    }
    // Through the daemon: a remote-triggered task whose origin the policy forbids never starts.
    const locked = await startTestDaemon({ name: "origin-ssrf", schedulers: [], overrides: { security: { allowedBackToSourceCIDRs: [] } } });
    try {
      const before = originStats();
      const download = Download.fromPartial({ url: origin.url("/file.bin?case=ssrf"), type: TaskType.STANDARD });
      await expect(locked.tasks.download({ download, remote: true })).rejects.toThrow(/SSRF policy/);
      expect(originStats().connects).toBe(before.connects);
    } finally {
      await locked.close();
    }
  });

  it("keeps the origin's status and headers, retrying only what may pass", async () => {
    const backend = new HttpBackend({ maxRetries: 2, retryBaseMs: 1 });
    const store = openTaskStore({ dataDir: tempDir("origin-native-store"), taskId: "failing", contentLength: SIZE, pieceLength: 4 * MiB });
    try {
      const route = await backend.route(origin.url(), origin.url(), {});
      if (!route) throw new Error("expected a native route for http");
      const requests = origin.requests;
      origin.failWith = 503;
      const busy = await failure(backend.fetchPiece(route, store, 1));
      expect(busy).toMatchObject({ statusCode: 503, temporary: true });
      expect(busy.message).toBe(`${origin.url()}: origin answered 503`);
      expect(origin.requests - requests).toBe(3);
      origin.failWith = undefined;
      const missing = await failure(backend.fetchPiece({ ...route, path: "/nope" }, store, 1));
      expect(missing).toMatchObject({ statusCode: 404, temporary: false });
      expect(missing.headers).toHaveProperty("date");
      expect(origin.requests - requests).toBe(4);
      expect(store.piece(1)).toBeUndefined();
      const p = await backend.fetchPiece(route, store, 1);
      expect(p).toMatchObject({ number: 1, offset: 4 * MiB, length: 4 * MiB, parentId: "" });
    } finally {
      origin.failWith = undefined;
      store.delete();
      await backend.close();
    }
  });
});
