// Issue #25: a trace of one dfget spans all processes. A manager, a scheduler, a seed peer and a
// peer run as processes of their own, each exporting to a small OTLP/HTTP collector in this
// test; one dfget through the peer downloads a file that the seed peer fetches from the origin.
// The spans of dfget, the peer, the scheduler and the seed peer share dfget's trace id, and the
// origin's requests carry it in `traceparent`. With tracing off nothing is exported (even with
// the OTel SDK's environment variables pointing at the collector) and no `traceparent` goes out.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer as createHttpServer, type IncomingHttpHeaders } from "node:http";
import { createServer as createNetServer } from "node:net";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { credentials, Metadata } from "@grpc/grpc-js";
import { stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkServing } from "../../src/common/grpc/health.js";
import { SchedulerClient } from "../../src/gen/scheduler/v2/scheduler.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, runDfget, sha256File, spawnDaemonProcess, tempDir, writeDaemonConfigFile } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";

const damselfly = new URL("../../bin/damselfly.js", import.meta.url).pathname;

interface ExportedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
}

interface OtlpJson {
  resourceSpans?: Array<{
    resource?: { attributes?: Array<{ key: string; value: { stringValue?: string } }> };
    scopeSpans?: Array<{ spans?: Array<{ traceId: string; spanId: string; parentSpanId?: string; name: string }> }>;
  }>;
}

/** An OTLP/HTTP collector taking the exporter's JSON bodies: every span it was sent, with its service.name. */
async function startCollector(): Promise<{ endpoint: string; spans: ExportedSpan[]; close(): Promise<void> }> {
  const spans: ExportedSpan[] = [];
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (b: Buffer) => chunks.push(b));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/traces" || !String(req.headers["content-type"]).startsWith("application/json")) {
        res.writeHead(415).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as OtlpJson;
      for (const rs of body.resourceSpans ?? []) {
        const service = rs.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue ?? "";
        for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push({ service, traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? "", name: s.name });
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return { endpoint: `127.0.0.1:${port}`, spans, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A component process; stop() sends SIGTERM and waits for it to exit (flushing its spans). */
class Component {
  private readonly exited: Promise<unknown>;
  constructor(readonly proc: ChildProcess) {
    this.exited = new Promise((r) => proc.once("exit", r));
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGTERM");
    await this.exited;
  }
}

/** Hostnames the scheduler at `addr` knows (ListHosts). */
function hostnames(addr: string): Promise<string[]> {
  const client = new SchedulerClient(addr, credentials.createInsecure());
  return new Promise((resolve) => {
    client.listHosts({}, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) => {
      client.close();
      resolve(err ? [] : (res?.hosts ?? []).map((h) => h.hostname));
    });
  });
}

interface Stack {
  peerConfig: string;
  peerSocket: string;
  stop(): Promise<void>;
}

/** Manager, scheduler, seed peer and peer, each a process; `tracing` is every config's tracing section. */
async function startStack(name: string, tracing: Record<string, unknown>): Promise<Stack> {
  const components: Component[] = [];
  const stop = async () => {
    // Peers first: their streams to the scheduler end before it goes.
    for (const c of components.reverse()) await c.stop();
  };
  try {
    const dir = tempDir(`${name}-stack`);
    const managerPort = await freePort();
    const managerConfig = join(dir, "manager.yaml");
    writeFileSync(
      managerConfig,
      stringify({
        server: { dataDir: join(dir, "manager"), logLevel: "error", grpc: { listenIP: "127.0.0.1", port: { start: managerPort, end: managerPort } }, rest: { addr: "127.0.0.1:0" } },
        metrics: { enable: false },
        tracing,
      }),
    );
    components.push(new Component(spawn(process.execPath, [damselfly, "manager", "--config", managerConfig], { stdio: ["ignore", "ignore", "inherit"] })));
    await until(() => checkServing(`127.0.0.1:${managerPort}`, credentials.createInsecure(), 1000), "the manager to serve", 60_000);

    const schedulerPort = await freePort();
    const scheduler = `127.0.0.1:${schedulerPort}`;
    const schedulerConfig = join(dir, "scheduler.yaml");
    writeFileSync(
      schedulerConfig,
      stringify({
        server: { listenIP: "127.0.0.1", advertiseIP: "127.0.0.1", logLevel: "error" },
        metrics: { enable: false },
        manager: { addr: `127.0.0.1:${managerPort}` },
        tracing,
      }),
    );
    components.push(new Component(spawn(process.execPath, [damselfly, "scheduler", "--config", schedulerConfig, "--port", String(schedulerPort)], { stdio: ["ignore", "ignore", "inherit"] })));
    await until(() => checkServing(scheduler, credentials.createInsecure(), 1000), "the scheduler to serve", 30_000);

    const daemon = (host: string, seed: boolean) =>
      writeDaemonConfigFile(tempDir(`${name}-${host}`), host, {
        seedPeer: { enable: seed },
        scheduler: { addrs: [scheduler], announceInterval: "30s" },
        security: { allowedBackToSourceCIDRs: ["127.0.0.0/8"] },
        tracing,
      });
    const seed = daemon(`${name}-seed`, true);
    const peer = daemon(`${name}-peer`, false);
    for (const d of [seed, peer]) {
      components.push(new Component(spawnDaemonProcess(d.config)));
      await until(() => existsSync(d.socket), `${d.config}'s socket`, 60_000);
    }
    // Both hosts announced: the scheduler triggers the seed peer instead of sending the peer to the origin.
    await until(async () => (await hostnames(scheduler)).filter((h) => h.startsWith(`${name}-`)).length === 2, "both daemons announced to the scheduler", 30_000);
    return { peerConfig: peer.config, peerSocket: peer.socket, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

const traceIdOf = (traceparent: string | string[] | undefined) => (typeof traceparent === "string" ? traceparent.split("-")[1] : undefined);

describe("tracing across processes", () => {
  let collector: Awaited<ReturnType<typeof startCollector>>;
  let origin: Origin;
  const out = tempDir("tracing-out");

  beforeAll(async () => {
    collector = await startCollector();
    origin = await startOrigin(makeContent(12 * 1024 * 1024, 25));
  });

  afterAll(async () => {
    await origin?.close();
    await collector?.close();
    cleanupTempDirs();
  });

  it("puts one dfget's spans in every process, and its origin requests, in one trace", async () => {
    const stack = await startStack("traced", { endpoint: collector.endpoint });
    let dfget: { status: number | null; stderr: string };
    try {
      dfget = await runDfget(stack.peerSocket, [origin.url(), "-O", join(out, "traced.bin"), "-c", stack.peerConfig]);
    } finally {
      // Stopping flushes each process's spans.
      await stack.stop();
    }
    expect(dfget.stderr).toBe("");
    expect(dfget.status).toBe(0);
    expect(sha256File(join(out, "traced.bin"))).toBe(origin.sha256);

    const root = collector.spans.find((s) => s.service === "dfget" && s.name === "dfget");
    expect(root, "dfget's span").toBeDefined();
    const traceId = root?.traceId ?? "";
    const trace = collector.spans.filter((s) => s.traceId === traceId);
    const names = (service: string) => trace.filter((s) => s.service === service).map((s) => s.name);
    expect(names("dfdaemon")).toContain("dfdaemon.v2.DfdaemonDownload/DownloadTask");
    expect(names("scheduler")).toEqual(expect.arrayContaining(["scheduler.v2.Scheduler/AnnouncePeer", "RegisterPeer"]));
    expect(names("seed-peer")).toEqual(expect.arrayContaining(["dfdaemon.v2.DfdaemonUpload/DownloadTask", "BackToSource"]));
    // The peer's DownloadTask is the child of dfget's span: the context crossed the unix socket.
    expect(trace.find((s) => s.name === "dfdaemon.v2.DfdaemonDownload/DownloadTask")?.parentSpanId).toBe(root?.spanId);
    // The manager exports too (the scheduler's calls), in traces of their own: no download passes it.
    expect(collector.spans.some((s) => s.service === "manager")).toBe(true);
    expect(names("manager")).toEqual([]);

    // Every origin request (the peer's length probe, the seed peer's pieces) belongs to the trace.
    expect(origin.seen.length).toBeGreaterThan(0);
    expect(origin.seen.map((h: IncomingHttpHeaders) => traceIdOf(h.traceparent))).toEqual(origin.seen.map(() => traceId));
  }, 240_000);

  it("exports nothing and sends no traceparent with tracing off, even with OTEL_* variables set", async () => {
    const before = { requests: origin.seen.length, spans: collector.spans.length };
    const env = { OTEL_TRACES_EXPORTER: process.env.OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT: process.env.OTEL_EXPORTER_OTLP_ENDPOINT };
    // Inherited by every process spawned below (they take the test's environment).
    process.env.OTEL_TRACES_EXPORTER = "otlp";
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://${collector.endpoint}`;
    let dfget: { status: number | null; stderr: string };
    try {
      const stack = await startStack("untraced", {});
      try {
        dfget = await runDfget(stack.peerSocket, [origin.url("/file.bin?untraced=1"), "-O", join(out, "untraced.bin"), "-c", stack.peerConfig]);
      } finally {
        await stack.stop();
      }
    } finally {
      for (const [k, v] of Object.entries(env)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    expect(dfget.status).toBe(0);
    expect(sha256File(join(out, "untraced.bin"))).toBe(origin.sha256);
    const requests = origin.seen.slice(before.requests);
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.filter((h) => h.traceparent !== undefined || h.tracestate !== undefined)).toEqual([]);
    expect(collector.spans.length).toBe(before.spans);
  }, 240_000);
});
