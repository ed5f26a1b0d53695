// A seed peer whose upload server runs mTLS (dfdaemon upload.server caCert/cert/key) and which
// reaches its scheduler over mTLS (scheduler caCert/cert/key): it announces itself as a seed
// with its seed-peer certificate, the scheduler health-checks it and has it fetch a task through
// seedPeer.tls, and a plaintext client of its upload server is refused.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata, status, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthClient } from "../../src/common/grpc/health.js";
import { channelCredentials, loadTls, type TlsFiles } from "../../src/common/grpc/tls.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { Download } from "../../src/gen/common/v2/common.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { stackCertificates } from "../../src/up/pki.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, startTestScheduler } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const work = mkdtempSync(join(tmpdir(), "upload-mtls-"));
let certs: Map<string, TlsFiles>;
let origin: Origin;
let scheduler: SchedulerHandle;
let seed: DaemonHandle;

beforeAll(async () => {
  certs = await stackCertificates(join(work, "pki"), [
    { name: "scheduler", role: "scheduler" },
    { name: "seed-1", role: "seed-peer" },
    { name: "peer-1", role: "peer" },
  ]);
  origin = await startOrigin(makeContent(9 * 1024 * 1024, 3));
  scheduler = await startTestScheduler({ server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", logLevel: "silent", tls: certs.get("scheduler") }, seedPeer: { enable: true, healthCheckInterval: "0s", tls: certs.get("scheduler") } });
  const seedTls = certs.get("seed-1");
  seed = await startTestDaemon({
    name: "seed-1",
    seed: true,
    schedulers: [`127.0.0.1:${scheduler.grpcPort}`],
    overrides: { scheduler: { addrs: [`127.0.0.1:${scheduler.grpcPort}`], announceInterval: "30s", ...seedTls }, upload: { server: { ip: "127.0.0.1", port: 0, ...seedTls } } },
  });
}, 60_000);

afterAll(async () => {
  await seed?.close();
  await scheduler?.close();
  await origin?.close();
  cleanupTempDirs();
  rmSync(work, { recursive: true, force: true });
});

function healthCode(port: number, creds: ChannelCredentials): Promise<number> {
  const c = new HealthClient(`127.0.0.1:${port}`, creds);
  return new Promise<number>((r) => c.check({ service: "" }, new Metadata(), { deadline: Date.now() + 5000 }, (e: ServiceError | null) => r(e ? e.code : status.OK))).finally(() => c.close());
}

describe("upload server under mTLS", () => {
  it("announces as a seed over mTLS and is put on the seed ring", async () => {
    await until(() => scheduler.seedPeers?.select("any-task") !== undefined, "the seed peer on the ring");
    expect(scheduler.seedPeers?.select("any-task")?.hostname).toBe("seed-1");
  });

  it("refuses plaintext clients and serves a client with a certificate of the CA", async () => {
    expect(await healthCode(seed.uploadPort, credentials.createInsecure())).toBe(status.UNAVAILABLE);
    expect(await healthCode(seed.uploadPort, channelCredentials(loadTls(certs.get("peer-1"), "peer-1"), ["seed-peer"]))).toBe(status.OK);
    // A client that expects a scheduler there does not take the seed peer's certificate for one.
    expect(await healthCode(seed.uploadPort, channelCredentials(loadTls(certs.get("peer-1"), "peer-1"), ["scheduler"]))).toBe(status.UNAVAILABLE);
  });

  it("fetches a task from the origin when the scheduler asks it through seedPeer.tls", async () => {
    const triggered = scheduler.seedPeers?.trigger("task-1", Download.fromPartial({ url: origin.url(), type: 0, priority: 6 }));
    expect(triggered?.host.hostname).toBe("seed-1");
    await triggered?.done;
    // The whole content (and a length probe of a byte or so).
    const served = origin.bytesServed;
    expect(served).toBeGreaterThanOrEqual(origin.content.length);
    expect(served).toBeLessThan(origin.content.length + 1024);
    // Now in the seed's cache: a download through its socket takes nothing more from the origin.
    await downloadVia(seed.socketPath, { url: origin.url(), outputPath: join(work, "out.bin") });
    expect(origin.bytesServed).toBe(served);
    expect(sha256File(join(work, "out.bin"))).toBe(origin.sha256);
  });
});
