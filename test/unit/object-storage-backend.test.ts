// ObjectStorageBackend's checks before any request (issue 23): a remote party's endpoint goes
// through the SSRF policy, bad options name the URL, and a failure never quotes a secret.
import { describe, expect, it } from "vitest";
import { remoteFetchPolicy } from "../../src/common/ssrf.js";
import { ObjectStorageBackend } from "../../src/daemon/backend/object-storage.js";
import { BackendError } from "../../src/daemon/backend/types.js";
import { Download } from "../../src/gen/common/v2/common.js";

const bound = (backend: ObjectStorageBackend, url: string, objectStorage: Download["objectStorage"]) => backend.forDownload(Download.fromPartial({ url, objectStorage }));

describe("ObjectStorageBackend", () => {
  it("refuses a remote party's endpoint in a private range unless allowlisted", async () => {
    const url = "s3://bucket/key";
    const os = { endpoint: "http://10.1.2.3:9000", accessKeyId: "id", accessKeySecret: "secret" };
    const refused = bound(new ObjectStorageBackend({ ssrf: remoteFetchPolicy([]) }), url, os);
    await expect(refused.stat({ url, headers: {} })).rejects.toThrow(/^s3:\/\/bucket\/key: storage endpoint refused/);
    // Allowlisted: the request goes out (and fails to connect, quickly, as a temporary error).
    const allowed = bound(new ObjectStorageBackend({ ssrf: remoteFetchPolicy(["127.0.0.0/8"]) }), url, { ...os, endpoint: "http://127.0.0.1:1" });
    await expect(allowed.stat({ url, headers: {} })).rejects.toSatisfy((e: unknown) => e instanceof BackendError && e.temporary && /cannot reach the store/.test(e.message));
  });

  it("names the URL and the missing option, with status 400, before any request", async () => {
    const backend = new ObjectStorageBackend({});
    const url = "oss://bucket/key";
    await expect(bound(backend, url, { accessKeyId: "id", accessKeySecret: "secret" }).stat({ url, headers: {} })).rejects.toSatisfy((e: unknown) => e instanceof BackendError && e.statusCode === 400 && e.message === "oss://bucket/key: oss needs endpoint (--storage-endpoint)");
  });

  it("never quotes a secret in an error", async () => {
    const backend = new ObjectStorageBackend({});
    const url = "gs://bucket/key";
    const missing = "/tmp/damselfly-no-such-credential-file.json";
    // The credential path is not a secret; the session token and key are: an unreachable store's error quotes neither.
    const os = { endpoint: "http://127.0.0.1:1", accessKeyId: "id", accessKeySecret: "the-key-s3cr3t", sessionToken: "the-token-s3cr3t" };
    const e = await bound(backend, "s3://bucket/key", os).stat({ url: "s3://bucket/key", headers: {} }).then(() => undefined, (x: unknown) => x as Error);
    expect(e?.message).toMatch(/^s3:\/\/bucket\/key: cannot reach the store/);
    expect(e?.message).not.toMatch(/s3cr3t/);
    await expect(bound(backend, url, { credentialPath: missing }).stat({ url, headers: {} })).rejects.toThrow(/^gs:\/\/bucket\/key: cannot read the credential file .* ENOENT$/);
  });
});
