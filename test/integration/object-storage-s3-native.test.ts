// s3:// pieces from a plain-http endpoint (SeaweedFS) go through the native origin client: each
// a ranged GET presigned by the SDK's signer, fetched straight into the task's native store. The
// version pin holds there too (If-Match: an object replaced between pieces fails with "origin
// content changed"), the store's refusals keep their meaning, and no signature appears in an
// error. https endpoints and anonymous reads keep the SDK path (the native client has no TLS).
import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendError } from "../../src/daemon/backend/index.js";
import { ObjectStorageBackend } from "../../src/daemon/backend/object-storage.js";
import { OriginChangedError } from "../../src/daemon/backend/pin.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { Download } from "../../src/gen/common/v2/common.js";
import { openTaskStore, originStats } from "../../src/native/index.js";
import { seaweedAccess } from "../helpers/object-store-access.js";
import type { RunningStore } from "../helpers/object-stores.js";
import { makeContent } from "../helpers/origin.js";
import { rejection } from "../helpers/rejection.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
const SIZE = 18 * MiB + 12345; // 5 pieces of 4 MiB
const access = seaweedAccess("damselfly-s3-native");
const failure = (p: Promise<unknown>) => rejection(p, (e): e is BackendError => e instanceof BackendError);

describe("s3:// back-to-source through the native origin client", () => {
  let store: RunningStore;
  let daemon: DaemonHandle;
  const content = makeContent(SIZE, 31);

  beforeAll(async () => {
    store = await access.start(tempDir("s3-native-store"));
    await store.put(access.bucket, "dir/object one.bin", content);
    daemon = await startTestDaemon({ name: "s3-native", schedulers: [] });
  });

  afterAll(async () => {
    await daemon?.close();
    await store?.close();
    cleanupTempDirs();
  });

  const backendFor = (url: string, options = access.options(store.endpoint)) => new ObjectStorageBackend({}).forDownload(Download.fromPartial({ url, objectStorage: options }));

  it("fetches every piece natively, one ranged GET each, and the file is the object", async () => {
    const before = originStats();
    const served = store.proxy.served();
    const out = join(tempDir("s3-native-out"), "f.bin");
    await downloadVia(daemon.socketPath, { url: `s3://${access.bucket}/dir/object%20one.bin`, outputPath: out, objectStorage: access.options(store.endpoint) });
    expect(sha256File(out)).toBe(createHash("sha256").update(content).digest("hex"));
    expect(originStats().pieces - before.pieces).toBe(5);
    expect(originStats().bytes - before.bytes).toBe(SIZE);
    expect(store.proxy.served() - served).toBeGreaterThanOrEqual(SIZE);
  });

  it("keeps the pin: an object replaced between pieces fails with origin content changed, naming no signature", async () => {
    const url = `s3://${access.bucket}/pinned.bin`;
    await store.put(access.bucket, "pinned.bin", makeContent(2 * MiB, 1));
    const backend = backendFor(url);
    const st = await backend.stat({ url, headers: {} });
    const found = await backend.route?.(url, url, {});
    if (!found || !backend.fetchPiece) throw new Error("expected a native route for a plain-http S3 endpoint");
    expect(found.path).toContain("X-Amz-Signature=");
    const route = { ...found, pin: { etag: st.headers.etag, contentLength: 2 * MiB } };
    const native = openTaskStore({ dataDir: tempDir("s3-native-pinned"), taskId: "pinned", contentLength: 2 * MiB, pieceLength: MiB });
    try {
      const first = await backend.fetchPiece(route, native, 0);
      expect(first.length).toBe(MiB);
      await store.put(access.bucket, "pinned.bin", makeContent(2 * MiB, 2));
      const changed = await failure(backend.fetchPiece(route, native, 1));
      expect(changed).toBeInstanceOf(OriginChangedError);
      expect(changed.message).toContain("origin content changed");
      expect(changed.message.startsWith(`${url}: `)).toBe(true);
      expect(changed.message).not.toMatch(/X-Amz-|Signature/i);
      expect(native.piece(1)).toBeUndefined();
    } finally {
      native.close();
    }
  });

  it("reports the store's refusal of a wrong secret as access denied, naming the URL and no secret", async () => {
    const url = `s3://${access.bucket}/dir/object%20one.bin`;
    const secret = "not-the-secret-key-0a1b2c3d4e5f";
    const backend = backendFor(url, { ...access.options(store.endpoint), accessKeySecret: secret });
    const route = await backend.route?.(url, url, {});
    if (!route || !backend.fetchPiece) throw new Error("expected a native route for a plain-http S3 endpoint");
    const native = openTaskStore({ dataDir: tempDir("s3-native-denied"), taskId: "denied", contentLength: SIZE, pieceLength: 4 * MiB });
    try {
      const denied = await failure(backend.fetchPiece(route, native, 0));
      expect(denied.statusCode).toBe(403);
      expect(denied.message).toBe(`${url}: access denied (403): the store refused the credentials, or they may not read this object`);
      expect(denied.message).not.toContain(secret);
    } finally {
      native.close();
    }
  });

  it("leaves https endpoints and anonymous reads to the SDK", async () => {
    const url = `s3://${access.bucket}/dir/object%20one.bin`;
    expect(await backendFor(url, { ...access.options(store.endpoint), endpoint: store.endpoint.replace(/^http:/, "https:") }).route?.(url, url, {})).toBeUndefined();
    expect(await backendFor(url, { endpoint: store.endpoint, region: "us-east-1" }).route?.(url, url, {})).toBeUndefined();
  });
});
