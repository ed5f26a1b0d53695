// The scheme of registries named without one (containerd's `?ns=host:port`): from the
// configured list, else from one cached TLS probe, plain HTTP only for loopback or configured
// hosts; and what a probe's TLS error says about the server.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/common/config.js";
import { ProxyRequestError } from "../../src/daemon/proxy/headers.js";
import { dispatcherProbe, isLoopbackHost, parseConfiguredRegistries, RegistrySchemes, SchemeCache, schemeFromProbeError, type Scheme } from "../../src/daemon/proxy/registry-scheme.js";

/** A probe that answers from a table and records what it was asked. */
function fakeProbe(answers: Record<string, Scheme | Error>) {
  const asked: string[] = [];
  const probe = (origin: string) => {
    asked.push(origin);
    const a = answers[origin];
    if (a === undefined) return Promise.reject(new Error(`connect ECONNREFUSED ${origin}`));
    return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
  };
  return { asked, probe };
}

async function refusal(p: Promise<unknown>): Promise<ProxyRequestError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ProxyRequestError);
  return e as ProxyRequestError;
}

describe("RegistrySchemes", () => {
  it("takes scheme and path prefix from the configured registries without probing", async () => {
    const { asked, probe } = fakeProbe({});
    const s = new RegistrySchemes({ configured: parseConfiguredRegistries(["http://10.0.0.5:5000", "https://harbor.example.com/proxy-cache", "http://plain.example.com"]), probe });
    const a = await s.resolve("10.0.0.5:5000", "ns");
    expect(a.url.href).toBe("http://10.0.0.5:5000/");
    expect(a.configured).toBe(true);
    expect((await s.resolve("HARBOR.example.com", "ns")).url.href).toBe("https://harbor.example.com/proxy-cache");
    // The default port of the entry's scheme, spelt out or not.
    expect((await s.resolve("plain.example.com", "ns")).url.href).toBe("http://plain.example.com/");
    expect((await s.resolve("plain.example.com:80", "ns")).url.href).toBe("http://plain.example.com/");
    expect(asked).toEqual([]);
    // A URL with its scheme is taken as given, and counts as configured when it is listed.
    expect(await s.resolve("http://10.0.0.5:5000", "x-dragonfly-registry")).toMatchObject({ configured: true });
    expect(await s.resolve("https://10.0.0.5:5000", "x-dragonfly-registry")).toMatchObject({ configured: false });
  });

  it("probes a loopback registry once and uses plain http when it does not speak TLS", async () => {
    const { asked, probe } = fakeProbe({ "https://127.0.0.1:5000": "http:", "https://[::1]:5001": "http:", "https://localhost:5002": "https:" });
    const s = new RegistrySchemes({ configured: [], probe });
    const a = await s.resolve("127.0.0.1:5000", "ns");
    expect(a).toMatchObject({ configured: false });
    expect(a.url.href).toBe("http://127.0.0.1:5000/");
    expect((await s.resolve("[::1]:5001", "ns")).url.href).toBe("http://[::1]:5001/");
    expect((await s.resolve("localhost:5002", "ns")).url.href).toBe("https://localhost:5002/");
    // Cached: no second probe, concurrent requests share one.
    await Promise.all([s.resolve("127.0.0.1:5000", "ns"), s.resolve("127.0.0.1:5000", "ns")]);
    expect(asked).toEqual(["https://127.0.0.1:5000", "https://[::1]:5001", "https://localhost:5002"]);
  });

  it("refuses a plain-HTTP registry that is neither loopback nor configured, naming the key to set", async () => {
    const { probe } = fakeProbe({ "https://10.1.2.3:5000": "http:", "https://registry.example.com:443": "https:" });
    const s = new RegistrySchemes({ configured: [], probe });
    const e = await refusal(s.resolve("10.1.2.3:5000", "ns query parameter"));
    expect(e.statusCode).toBe(502);
    expect(e.reason).toBe("plain_http_registry");
    // Found by test/unit/proxy-fuzz.test.ts: the refusal names where the registry came from.
    expect(e.message).toMatch(/^ns query parameter: registry 10\.1\.2\.3:5000 speaks plain HTTP/);
    expect(e.message).toContain('add "http://10.1.2.3:5000" to proxy.registryMirror.registries');
    // A TLS registry without a port stays at 443 with an https URL.
    expect((await s.resolve("registry.example.com/prefix", "ns")).url.href).toBe("https://registry.example.com/prefix");
    // A host the operator listed (on another port) may be plain HTTP.
    const listed = new RegistrySchemes({ configured: parseConfiguredRegistries(["https://10.1.2.3"]), probe });
    expect((await listed.resolve("10.1.2.3:5000", "ns")).url.href).toBe("http://10.1.2.3:5000/");
  });

  it("does not cache a failed probe, and caches answers only for the TTL", async () => {
    let now = 0;
    const cache = new SchemeCache(1024, 600_000, () => now);
    const answers: Record<string, Scheme | Error> = {};
    const { asked, probe } = fakeProbe(answers);
    const s = new RegistrySchemes({ configured: [], probe, cache });
    const down = await refusal(s.resolve("127.0.0.1:5000", "ns query parameter"));
    expect(down.statusCode).toBe(502);
    expect(down.reason).toBe("upstream_unreachable");
    expect(down.message).toMatch(/ns query parameter: cannot reach registry 127\.0\.0\.1:5000.*ECONNREFUSED/);
    expect(cache.get("127.0.0.1:5000")).toBeUndefined();
    answers["https://127.0.0.1:5000"] = "http:";
    expect((await s.resolve("127.0.0.1:5000", "ns")).url.protocol).toBe("http:");
    expect(cache.get("127.0.0.1:5000")).toBe("http:");
    now += 599_999;
    await s.resolve("127.0.0.1:5000", "ns");
    expect(asked.length).toBe(2);
    now += 2;
    answers["https://127.0.0.1:5000"] = "https:";
    expect((await s.resolve("127.0.0.1:5000", "ns")).url.protocol).toBe("https:");
    expect(asked.length).toBe(3);
  });

  it("keeps the cache bounded, oldest entry out first", () => {
    const cache = new SchemeCache(3);
    for (const k of ["a:1", "b:1", "c:1", "d:1"]) cache.set(k, "https:");
    expect(cache.size).toBe(3);
    expect(cache.get("a:1")).toBeUndefined();
    expect(cache.get("d:1")).toBe("https:");
  });

  it("refuses values that are not a registry address with 400", async () => {
    const s = new RegistrySchemes({ configured: [], probe: fakeProbe({}).probe });
    for (const v of ["user:pw@host:5000", "host:99999", "ftp://host", "host:5000?x=1", "", "a b"]) {
      const e = await refusal(s.resolve(v, "x-dragonfly-registry"));
      expect(e.statusCode, v).toBe(400);
      expect(e.message, v).toContain("x-dragonfly-registry");
    }
  });
});

describe("proxy.registryMirror.registries", () => {
  it("is checked at startup, naming the index of a bad entry", () => {
    expect(parseConfiguredRegistries(["http://127.0.0.1:5000/", "https://h"]).map((u) => u.origin)).toEqual(["http://127.0.0.1:5000", "https://h"]);
    expect(() => parseConfiguredRegistries(["http://ok", "127.0.0.1:5000"])).toThrow(ConfigError);
    expect(() => parseConfiguredRegistries(["http://ok", "127.0.0.1:5000"])).toThrow(/proxy\.registryMirror\.registries\.1: .*http:\/\/127\.0\.0\.1:5000/);
    expect(() => parseConfiguredRegistries(["http://u:p@h"])).toThrow(/registries\.0: .*no credentials/);
  });
});

describe("loopback hosts", () => {
  it.each([
    ["127.0.0.1", true],
    ["127.9.8.7", true],
    ["::1", true],
    ["[::1]", true],
    ["localhost", true],
    ["LOCALHOST", true],
    ["10.0.0.1", false],
    ["128.0.0.1", false],
    ["127.example.com", false],
    ["registry.example.com", false],
  ])("%s → %s", (host, want) => {
    expect(isLoopbackHost(host)).toBe(want);
  });
});

describe("TLS probe errors", () => {
  const err = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {});
  it("reads plain HTTP, TLS after all, or nothing from the error", () => {
    expect(schemeFromProbeError(err("808C:error:0A00010B:SSL routines:ssl3_get_record:wrong version number", "ERR_SSL_WRONG_VERSION_NUMBER"))).toBe("http:");
    expect(schemeFromProbeError(err("error:0A0000C6:SSL routines::packet length too long"))).toBe("http:");
    expect(schemeFromProbeError(new Error("fetch failed", { cause: err("x", "ERR_SSL_WRONG_VERSION_NUMBER") }))).toBe("http:");
    expect(schemeFromProbeError(err("self-signed certificate", "DEPTH_ZERO_SELF_SIGNED_CERT"))).toBe("https:");
    expect(schemeFromProbeError(err("unable to verify the first certificate", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"))).toBe("https:");
    expect(schemeFromProbeError(err("connect ECONNREFUSED 127.0.0.1:1", "ECONNREFUSED"))).toBeUndefined();
    expect(schemeFromProbeError(err("Connect Timeout Error", "UND_ERR_CONNECT_TIMEOUT"))).toBeUndefined();
  });
});

describe("dispatcherProbe against a real plain-HTTP server", () => {
  let server: Server;
  let agent: Agent;
  beforeAll(async () => {
    server = createServer((_req, res) => res.end("{}"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    agent = new Agent();
  });
  afterAll(async () => {
    await agent.close();
    await new Promise<void>((r) => server.close(() => r()));
  });
  it("learns http from Node's answer to a ClientHello, and fails for a closed port", async () => {
    const probe = dispatcherProbe(agent, 5000);
    expect(await probe(`https://127.0.0.1:${(server.address() as AddressInfo).port}`)).toBe("http:");
    await expect(probe("https://127.0.0.1:1")).rejects.toThrow(/ECONNREFUSED/);
  });
});
