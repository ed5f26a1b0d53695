import { describe, expect, it } from "vitest";
import { remoteFetchPolicy, SsrfError, SsrfPolicy } from "../../src/common/ssrf.js";

describe("SsrfPolicy", () => {
  const policy = new SsrfPolicy();
  it("refuses loopback, link-local, metadata, unspecified and multicast by default", () => {
    for (const ip of ["127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "169.254.169.254", "169.254.1.1", "fe80::1", "224.0.0.1", "ff02::1", "255.255.255.255", "100.100.100.200", "fd00:ec2::254", "::ffff:127.0.0.1", "[::1]"]) {
      expect(policy.isAllowed(ip), ip).toBe(false);
    }
  });
  it("allows public and private unicast by default", () => {
    for (const ip of ["8.8.8.8", "10.1.2.3", "192.168.1.1", "172.16.0.1", "2001:db8::1", "fd12::1", "::ffff:10.0.0.1"]) expect(policy.isAllowed(ip), ip).toBe(true);
  });
  it("refuses private ranges when asked to", () => {
    const strict = new SsrfPolicy({ denyPrivate: true });
    for (const ip of ["10.1.2.3", "192.168.1.1", "172.31.0.1", "100.64.0.1", "fd12::1"]) expect(strict.isAllowed(ip), ip).toBe(false);
    expect(strict.isAllowed("8.8.8.8")).toBe(true);
  });
  it("lets an allowlist override refusals", () => {
    const p = new SsrfPolicy({ allowCidrs: ["127.0.0.1/32", "fe80::/10"] });
    expect(p.isAllowed("127.0.0.1")).toBe(true);
    expect(p.isAllowed("127.0.0.2")).toBe(false);
    expect(p.isAllowed("fe80::5")).toBe(true);
  });
  it("rejects malformed allowlist entries and non-IP input", () => {
    expect(() => new SsrfPolicy({ allowCidrs: ["10.0.0.0/33"] })).toThrow(/invalid CIDR/);
    expect(() => new SsrfPolicy({ allowCidrs: ["nope"] })).toThrow(/invalid CIDR/);
    expect(policy.isAllowed("localhost")).toBe(false);
    expect(() => policy.check("169.254.169.254", "metadata.google.internal")).toThrow(SsrfError);
  });
  it("checks URLs by the addresses their host resolves to", async () => {
    await expect(policy.checkUrl("http://127.0.0.1/x")).rejects.toBeInstanceOf(SsrfError);
    await expect(policy.checkUrl("http://[::1]:8080/x")).rejects.toBeInstanceOf(SsrfError);
    await expect(policy.checkUrl("http://localhost/x")).rejects.toBeInstanceOf(SsrfError);
    await expect(policy.checkUrl("file:///etc/passwd")).rejects.toThrow(/unsupported URL scheme/);
    await expect(policy.checkUrl("http://10.0.0.1/x")).resolves.toBeUndefined();
  });
  it("filters lookup results and fails when nothing is left", async () => {
    const result = await new Promise<{ err: NodeJS.ErrnoException | null }>((resolve) => policy.lookup("localhost", {}, (err) => resolve({ err })));
    expect(result.err).toBeInstanceOf(SsrfError);
  });
});

describe("remoteFetchPolicy (upload DownloadTask, proxy upstreams)", () => {
  const ranges: Array<[string, string]> = [
    ["10/8", "10.20.30.40"],
    ["172.16/12", "172.31.255.1"],
    ["192.168/16", "192.168.1.1"],
    ["100.64/10", "100.127.0.9"],
    ["fc00::/7", "fd12:3456::1"],
    ["fc00::/7 (fc)", "fc00::1"],
    ["IPv4-mapped 10/8", "::ffff:10.0.0.1"],
  ];
  it.each(ranges)("refuses %s, naming the address", (_range, ip) => {
    const p = remoteFetchPolicy([]);
    expect(() => p.check(ip, "origin.internal")).toThrow(SsrfError);
    expect(() => p.check(ip, "origin.internal")).toThrow(new RegExp(`origin\\.internal \\(${ip.replace(/[.:]/g, "\\$&")}\\).*SSRF policy`));
  });
  it("lets the allowlist name a private origin, and only that one", () => {
    const p = remoteFetchPolicy(["10.20.0.0/16", "fd12:3456::/32"]);
    expect(p.isAllowed("10.20.30.40")).toBe(true);
    expect(p.isAllowed("fd12:3456::1")).toBe(true);
    expect(p.isAllowed("10.21.0.1")).toBe(false);
    expect(p.isAllowed("192.168.1.1")).toBe(false);
    expect(p.isAllowed("8.8.8.8")).toBe(true);
  });
});
