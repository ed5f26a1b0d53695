// The `tracing` section (Dragonfly's keys) in every component's config, and what tracing off
// leaves untouched: no SDK, no trace headers, no interceptors, the handlers as they were.
// (Spans and propagation with tracing on: test/integration/tracing-stack.test.ts.)
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/common/config.js";
import { collectorUrl, loadTracingSection, startTracing, tracedImplementation, tracingClientOptions, tracingEnabled, withTraceHeaders } from "../../src/common/tracing.js";
import { loadDaemonConfig } from "../../src/daemon/config.js";
import { resolveManagerConfig } from "../../src/manager/config.js";
import { resolveSchedulerConfig } from "../../src/scheduler/config.js";
import { SchedulerService } from "../../src/gen/scheduler/v2/scheduler.js";
import { cleanupTempDirs, tempDir } from "../helpers/swarm.js";

const dir = tempDir("tracing-config");
afterAll(() => cleanupTempDirs());

function yamlFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe("tracing config", () => {
  it("is off by default in every component, with Dragonfly's path", () => {
    const off = { protocol: "http", endpoint: "", path: "/v1/traces", headers: {} };
    expect(resolveSchedulerConfig({}).tracing).toEqual(off);
    expect(resolveManagerConfig({}, "m.yaml", {}).tracing).toEqual(off);
    expect(loadDaemonConfig(undefined, { dataDir: dir }).tracing).toEqual(off);
    expect(loadTracingSection(yamlFile("none.yaml", "scheduler:\n  addrs: []\n"))).toEqual(off);
  });

  it("takes an endpoint, protocol, path and headers", () => {
    const c = resolveSchedulerConfig({ tracing: { protocol: "https", endpoint: "collector.example:4318", path: "/otlp/v1/traces", headers: { authorization: "Bearer x" } } });
    expect(collectorUrl(c.tracing)).toBe("https://collector.example:4318/otlp/v1/traces");
    expect(c.tracing.headers).toEqual({ authorization: "Bearer x" });
    expect(collectorUrl({ ...c.tracing, protocol: "http", endpoint: "[::1]:4318", path: "/v1/traces" })).toBe("http://[::1]:4318/v1/traces");
  });

  it("names the key and the file when the section is wrong", () => {
    expect(() => resolveSchedulerConfig({ tracing: { endpoint: "http://c:4318" } }, "s.yaml")).toThrow(new ConfigError('s.yaml: tracing.endpoint: "http://c:4318" is not host:port (e.g. 127.0.0.1:4318)'));
    expect(() => resolveManagerConfig({ tracing: { endpoint: "collector" } }, "m.yaml", {})).toThrow(/^m\.yaml: tracing\.endpoint: "collector" is not host:port/);
    expect(() => resolveSchedulerConfig({ tracing: { protocol: "grpc", endpoint: "c:4317" } }, "s.yaml")).toThrow(/^s\.yaml: tracing\.protocol/);
    const daemon = yamlFile("dfdaemon.yaml", "tracing:\n  endpoint: nowhere\n");
    expect(() => loadDaemonConfig(daemon, { dataDir: dir })).toThrow(`${daemon}: tracing.endpoint: "nowhere" is not host:port`);
    expect(() => loadTracingSection(daemon)).toThrow(`${daemon}: tracing.endpoint: "nowhere" is not host:port`);
    const typo = yamlFile("typo.yaml", "tracing:\n  addr: c:4318\n");
    expect(() => loadTracingSection(typo)).toThrow(new ConfigError(`${typo}: tracing.addr: unknown key`));
  });
});

describe("tracing off", () => {
  it("starts nothing and changes nothing on the wire or in the servers", async () => {
    const stop = await startTracing("test", { protocol: "http", endpoint: "", path: "/v1/traces", headers: {} });
    expect(tracingEnabled()).toBe(false);
    const headers = { "user-agent": "damselfly" };
    expect(withTraceHeaders(headers)).toBe(headers);
    expect(tracingClientOptions()).toEqual({});
    const implementation = { announcePeer: () => undefined };
    expect(tracedImplementation(SchedulerService, implementation)).toBe(implementation);
    await stop();
  });
});
