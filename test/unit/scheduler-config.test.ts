import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/common/config.js";
import { parseListenAddr, resolveSchedulerConfig } from "../../src/scheduler/config.js";
import { callerAddress, checkHostAddress, isLinkLocal, isLoopback } from "../../src/scheduler/validate.js";

describe("scheduler config", () => {
  it("has Dragonfly's defaults", () => {
    const c = resolveSchedulerConfig({});
    expect(c.server.port).toBe(8002);
    expect(c.server.listenIP).toBe("0.0.0.0");
    expect(c.scheduler).toMatchObject({ algorithm: "default", backToSourceCount: 200, retryBackToSourceLimit: 4, retryLimit: 5, retryInterval: 500, filterParentLimit: 15, candidateParentLimit: 3 });
    expect(c.scheduler.gc).toEqual({ pieceDownloadTimeout: 1_800_000, peerGCInterval: 10_000, peerTTL: 86_400_000, taskGCInterval: 1_800_000, hostGCInterval: 300_000, hostTTL: 3_600_000 });
    expect(c.metrics).toMatchObject({ enable: true, host: "0.0.0.0", port: 8000 });
    expect(c.manager).toMatchObject({ addr: "", schedulerClusterID: 1, keepAlive: { interval: 5000 } });
  });

  it("names unknown keys and bad values", () => {
    expect(() => resolveSchedulerConfig({ scheduler: { retryLimt: 3 } }, "s.yaml")).toThrow(new ConfigError("s.yaml: scheduler.retryLimt: unknown key"));
    expect(() => resolveSchedulerConfig({ scheduler: { algorithm: "ml" } }, "s.yaml")).toThrow(/scheduler\.algorithm/);
    expect(() => resolveSchedulerConfig({ scheduler: { gc: { peerTTL: "1 day" } } }, "s.yaml")).toThrow(/scheduler\.gc\.peerTTL/);
    expect(() => resolveSchedulerConfig({ metrics: { addr: "nowhere" } }, "s.yaml")).toThrow(/metrics\.addr: invalid address/);
  });

  it("parses listen addresses", () => {
    expect(parseListenAddr(":8000")).toEqual({ host: "0.0.0.0", port: 8000 });
    expect(parseListenAddr("[::1]:9")).toEqual({ host: "::1", port: 9 });
    expect(() => parseListenAddr("a:99999")).toThrow(ConfigError);
  });
});

describe("announced host addresses", () => {
  it("classifies loopback and link-local", () => {
    expect(isLoopback("127.0.0.5")).toBe(true);
    expect(isLoopback("::1")).toBe(true);
    expect(isLoopback("::ffff:127.0.0.1")).toBe(true);
    expect(isLoopback("10.0.0.1")).toBe(false);
    expect(isLinkLocal("169.254.169.254")).toBe(true);
    expect(isLinkLocal("fe80::1")).toBe(true);
    expect(isLinkLocal("192.168.1.1")).toBe(false);
  });

  it("accepts loopback only from a loopback caller, never link-local or unspecified", () => {
    expect(() => checkHostAddress("127.0.0.1", "127.0.0.1")).not.toThrow();
    expect(() => checkHostAddress("127.0.0.1", "10.1.2.3")).toThrow(/loopback but the announcement came from 10\.1\.2\.3/);
    expect(() => checkHostAddress("169.254.169.254", "127.0.0.1")).toThrow(/link-local/);
    expect(() => checkHostAddress("0.0.0.0", "10.1.2.3")).toThrow(/unspecified/);
    expect(() => checkHostAddress("not-an-ip", "10.1.2.3")).toThrow(/not an IP/);
    expect(() => checkHostAddress("10.0.0.7", "10.1.2.3")).not.toThrow();
  });

  it("extracts the caller address from grpc-js peer strings", () => {
    expect(callerAddress("127.0.0.1:5555")).toBe("127.0.0.1");
    expect(callerAddress("ipv4:10.0.0.1:1")).toBe("10.0.0.1");
    expect(callerAddress("[::1]:5555")).toBe("::1");
    expect(callerAddress("ipv6:[fe80::1]:5")).toBe("fe80::1");
  });
});

describe("request rate limit", () => {
  it("lets a burst through, then refills at the configured rate", async () => {
    const { TokenBucket } = await import("../../src/common/token-bucket.js");
    let t = 0;
    const b = new TokenBucket(10, 3, () => t);
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
    t += 100; // one token per 100 ms
    expect([b.take(), b.take()]).toEqual([true, false]);
    t += 10_000;
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
  });
});
