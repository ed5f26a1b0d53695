// The upload service's DownloadTask (what schedulers and managers call for seed triggers and
// preheats) refuses origins in private ranges unless security.allowedBackToSourceCIDRs names
// them, before any connection is made; the error names the address. An allowlisted origin
// (127.0.0.1 here: tests bind loopback only) downloads as before, and local dfget over the
// unix socket keeps its unchecked policy.
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { Download, TaskType } from "../../src/gen/common/v2/common.js";
import { DfdaemonUploadClient, type DownloadTaskResponse } from "../../src/gen/dfdaemon/v2/dfdaemon.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, startTestDaemon } from "../helpers/swarm.js";

let daemon: DaemonHandle;
let client: InstanceType<typeof DfdaemonUploadClient>;
let origin: Origin;

beforeAll(async () => {
  origin = await startOrigin(makeContent(300_000, 41));
  daemon = await startTestDaemon({ name: "ssrf-private", schedulers: [] });
  client = new DfdaemonUploadClient(`127.0.0.1:${daemon.uploadPort}`, credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await daemon?.close();
  await origin?.close();
  cleanupTempDirs();
});

/** Runs a remote DownloadTask to its end: the number of pieces, or the call's error. */
function remoteDownload(url: string): Promise<{ pieces: number } | { error: ServiceError }> {
  return new Promise((resolve) => {
    let pieces = 0;
    const call = client.downloadTask({ download: Download.fromPartial({ url, type: TaskType.STANDARD, priority: 6 }) }, new Metadata());
    call.on("data", (r: DownloadTaskResponse) => (r.response?.$case === "downloadPieceFinishedResponse" ? pieces++ : undefined));
    call.on("error", (error: ServiceError) => resolve({ error }));
    call.on("end", () => resolve({ pieces }));
  });
}

describe("remote DownloadTask and private ranges", () => {
  it.each([
    ["10/8", "10.20.30.40", "http://10.20.30.40:8080/f.bin"],
    ["172.16/12", "172.20.0.5", "http://172.20.0.5/f.bin"],
    ["192.168/16", "192.168.100.1", "http://192.168.100.1:5000/v2/a/blobs/sha256:00"],
    ["100.64/10", "100.64.1.2", "https://100.64.1.2/f.bin?X-Amz-Signature=abc"],
    ["fc00::/7", "fd00:1234::5", "http://[fd00:1234::5]:8080/f.bin"],
  ])("refuses %s naming the address", async (_range, ip, url) => {
    const r = await remoteDownload(url);
    expect("error" in r, JSON.stringify(r)).toBe(true);
    if (!("error" in r)) return;
    expect(r.error.details).toMatch(/SSRF policy/);
    expect(r.error.details).toContain(ip);
    expect(daemon.storage.list().some((t) => t.meta.url === url && t.meta.state === "succeeded")).toBe(false);
  });

  it("downloads from an allowlisted origin", async () => {
    const r = await remoteDownload(origin.url("/file.bin?case=allowed"));
    expect(r).toEqual({ pieces: 1 });
  });

  it("leaves local dfget over the unix socket unchecked", async () => {
    const locked = await startTestDaemon({ name: "ssrf-local", schedulers: [], overrides: { security: { allowedBackToSourceCIDRs: [] } } });
    try {
      const r = await downloadVia(locked.socketPath, { url: origin.url("/file.bin?case=local") });
      expect(r.contentLength).toBe(300_000);
    } finally {
      await locked.close();
    }
  });
});
