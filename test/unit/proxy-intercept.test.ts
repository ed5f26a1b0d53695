// Which CONNECTs the proxy intercepts (only hosts its config names; others are tunnelled), the
// name scope its CA is constrained to, and where the proxy listens by default.
import { describe, expect, it } from "vitest";
import { ConfigError, validateConfig } from "../../src/common/config.js";
import { DaemonConfigSchema, resolveDaemonConfig } from "../../src/daemon/config.js";
import { InterceptPolicy, literalHijackHost, literalRuleHost } from "../../src/daemon/proxy/intercept.js";

const base = { rules: [{ regex: "blobs/sha256.*" }], registryMirror: { addr: "https://index.docker.io", registries: [] as string[] }, hijackHTTPS: { hosts: [] as Array<{ regx: string }> } };

describe("InterceptPolicy", () => {
  it("intercepts only the mirror's host by default: a rule without a host names none", () => {
    const p = new InterceptPolicy(base);
    expect(p.intercepts("index.docker.io", 443)).toBe(true);
    expect(p.intercepts("INDEX.docker.io", 8443)).toBe(true);
    expect(p.intercepts("bank.example.com", 443)).toBe(false);
    expect(p.intercepts("registry-1.docker.io", 443)).toBe(false);
    expect(p.scope).toEqual({ dnsNames: ["index.docker.io"], ips: [], anyDnsName: false });
  });

  it("adds listed registries, hosts a rule names literally, and hijackHTTPS hosts", () => {
    const p = new InterceptPolicy({
      rules: [{ regex: "^https://ghcr\\.io/v2/.*blobs/sha256.*" }, { regex: "harbor\\.example\\.com:8443/v2/" }, { regex: "blobs/sha256.*" }],
      registryMirror: { addr: "http://127.0.0.1:5000", registries: ["https://[::1]:5001", "https://quay.io/prefix"] },
      hijackHTTPS: { hosts: [{ regx: "^mirror\\.aliyuncs\\.com:443$" }, { regx: ".*\\.corp\\.example:443" }, { regx: "10\\.1\\.2\\.3" }] },
    });
    for (const h of ["ghcr.io", "harbor.example.com", "127.0.0.1", "[::1]", "quay.io", "mirror.aliyuncs.com", "10.1.2.3"]) expect(p.intercepts(h, 443), h).toBe(true);
    // A hijack regex matches the authority, host:port, as in Dragonfly's Go client.
    expect(p.intercepts("a.corp.example", 443)).toBe(true);
    expect(p.intercepts("a.corp.example", 8443)).toBe(false);
    // An IP only a regex could match is tunnelled: the CA's constraints do not permit it.
    expect(new InterceptPolicy({ ...base, hijackHTTPS: { hosts: [{ regx: ".*" }] } }).intercepts("10.9.9.9", 443)).toBe(false);
    expect(p.scope).toEqual({ dnsNames: ["ghcr.io", "harbor.example.com", "mirror.aliyuncs.com", "quay.io"], ips: ["10.1.2.3", "127.0.0.1", "::1"], anyDnsName: true });
  });

  it("reads literal hosts out of regexes only when no regex syntax is left", () => {
    expect(literalRuleHost("^https?://registry\\.example\\.com/")).toBe("registry.example.com");
    expect(literalRuleHost("https:\\/\\/registry\\.example\\.com\\/")).toBe("registry.example.com");
    expect(literalRuleHost("blobs/sha256.*")).toBeUndefined();
    expect(literalRuleHost("^https://.*\\.example\\.com/")).toBeUndefined();
    expect(literalRuleHost("registry.example.com/")).toBeUndefined(); // "." is any character
    expect(literalHijackHost("^mirror\\.aliyuncs\\.com:443$")).toBe("mirror.aliyuncs.com");
    expect(literalHijackHost("mirror\\.aliyuncs\\.com|evil\\.com")).toBeUndefined();
    expect(() => new InterceptPolicy({ ...base, hijackHTTPS: { hosts: [{ regx: "(" }] } })).toThrow(/proxy\.hijackHTTPS\.hosts\.0\.regx/);
  });
});

describe("proxy.server.ip", () => {
  const resolve = (server: object) => resolveDaemonConfig(validateConfig(DaemonConfigSchema, { proxy: { server } })).proxy?.server.ip;
  it("binds 127.0.0.1 unless basic auth is set, then 0.0.0.0 as Dragonfly does", () => {
    expect(resolve({})).toBe("127.0.0.1");
    expect(resolve({ basicAuth: { username: "u", password: "p" } })).toBe("0.0.0.0");
    expect(resolve({ ip: "::1" })).toBe("::1");
    expect(resolve({ ip: "10.0.0.5", basicAuth: { username: "u", password: "p" } })).toBe("10.0.0.5");
    expect(resolveDaemonConfig(validateConfig(DaemonConfigSchema, {})).proxy).toBeUndefined();
  });
  it("refuses a non-loopback address without basic auth, naming the key", () => {
    for (const ip of ["0.0.0.0", "10.0.0.5", "::"]) {
      expect(() => resolve({ ip })).toThrow(ConfigError);
      expect(() => resolve({ ip })).toThrow(/proxy\.server\.ip: .*basicAuth/);
    }
  });
});
