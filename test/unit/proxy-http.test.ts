// Pure pieces of the proxy: Range parsing over a known length, X-Dragonfly-* header parsing,
// hop-by-hop filtering, proxy.rules matching and the proxy config section.
import { describe, expect, it } from "vitest";
import { ConfigError, validateConfig } from "../../src/common/config.js";
import { DaemonConfigSchema } from "../../src/daemon/config.js";
import { downstreamResponseHeaders, parsePieceLength, ProxyRequestError, readDragonflyHeaders, upstreamRequestHeaders } from "../../src/daemon/proxy/headers.js";
import { coveringPieces, parseRange } from "../../src/daemon/proxy/range.js";
import { compileRules, downloadUrl, matchRule } from "../../src/daemon/proxy/rules.js";

describe("parseRange", () => {
  const size = 1000;
  it.each([
    ["bytes=0-99", { kind: "range", start: 0, end: 99 }],
    ["bytes=100-", { kind: "range", start: 100, end: 999 }],
    ["bytes=-100", { kind: "range", start: 900, end: 999 }],
    ["bytes=-5000", { kind: "range", start: 0, end: 999 }],
    ["bytes=990-5000", { kind: "range", start: 990, end: 999 }],
    ["bytes=999-999", { kind: "range", start: 999, end: 999 }],
    [" Bytes = 1 - 2 ", { kind: "range", start: 1, end: 2 }],
    ["bytes=1000-", { kind: "unsatisfiable" }],
    ["bytes=1000-1001", { kind: "unsatisfiable" }],
    ["bytes=-0", { kind: "unsatisfiable" }],
    ["bytes=5-2", { kind: "none" }],
    ["bytes=0-1,5-6", { kind: "none" }],
    ["items=0-1", { kind: "none" }],
    ["bytes=-", { kind: "none" }],
    ["bytes=abc", { kind: "none" }],
    ["bytes=99999999999999999999-", { kind: "none" }],
  ])("%s", (header, want) => {
    expect(parseRange(header, size)).toEqual(want);
  });
  it("has nothing to satisfy in empty content", () => {
    expect(parseRange("bytes=0-", 0)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange("bytes=-1", 0)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange(undefined, 0)).toEqual({ kind: "none" });
  });
  it("maps byte ranges to the pieces that hold them", () => {
    expect(coveringPieces(0, 99, 100)).toEqual({ first: 0, last: 0 });
    expect(coveringPieces(99, 100, 100)).toEqual({ first: 0, last: 1 });
    expect(coveringPieces(250, 999, 100)).toEqual({ first: 2, last: 9 });
  });
});

describe("X-Dragonfly-* request headers", () => {
  it("reads every header Dragonfly's proxy reads", () => {
    const o = readDragonflyHeaders(
      {
        "x-dragonfly-tag": "t",
        "x-dragonfly-application": "app",
        "x-dragonfly-priority": "3",
        "x-dragonfly-filtered-query-params": "Signature, Expires,ns",
        "x-dragonfly-use-p2p": "TRUE",
        "x-dragonfly-prefetch": "false",
        "x-dragonfly-piece-length": "8mib",
        "x-dragonfly-content-for-calculating-task-id": "layer-1",
        "x-dragonfly-enable-task-id-based-blob-digest": "true",
      },
      ["ns"],
    );
    expect(o).toEqual({ tag: "t", application: "app", priority: 3, filteredQueryParams: ["Signature", "Expires", "ns"], useP2P: true, prefetch: false, pieceLength: 8 << 20, contentForCalculatingTaskId: "layer-1", enableTaskIdBasedBlobDigest: true });
    expect(readDragonflyHeaders({}, ["ns"])).toEqual({ tag: undefined, application: undefined, priority: 6, filteredQueryParams: ["ns"], useP2P: false, prefetch: undefined, pieceLength: undefined, contentForCalculatingTaskId: undefined, enableTaskIdBasedBlobDigest: undefined });
  });
  it("refuses output paths on the network port and bad values, naming the header", () => {
    const refuse = (h: Record<string, string>, re: RegExp, status = 400) => {
      let err: unknown;
      try {
        readDragonflyHeaders(h, []);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ProxyRequestError);
      expect((err as ProxyRequestError).message).toMatch(re);
      expect((err as ProxyRequestError).statusCode).toBe(status);
    };
    refuse({ "x-dragonfly-output-path": "/tmp/x" }, /x-dragonfly-output-path is refused/, 403);
    refuse({ "x-dragonfly-priority": "7" }, /x-dragonfly-priority/);
    refuse({ "x-dragonfly-priority": "-1" }, /x-dragonfly-priority/);
    refuse({ "x-dragonfly-use-p2p": "yes" }, /x-dragonfly-use-p2p/);
    refuse({ "x-dragonfly-prefetch": "1" }, /x-dragonfly-prefetch/);
    refuse({ "x-dragonfly-piece-length": "1b" }, /outside 4 MiB/);
  });
  it.each([
    ["4mib", 4 << 20],
    ["4 MiB", 4 << 20],
    ["64MiB", 64 << 20],
    ["4194304", 4 << 20],
    ["5mb", 5e6],
  ])("piece length %s", (text, want) => {
    expect(parsePieceLength(text)).toBe(want);
  });
  it.each(["1b", "abc", "1tib", "65mib", "3.9mib", ""])("refuses piece length %s", (text) => {
    expect(() => parsePieceLength(text)).toThrow(ProxyRequestError);
  });
  it("drops hop-by-hop, proxy and X-Dragonfly-* headers going upstream and coming back", () => {
    expect(
      upstreamRequestHeaders({ host: "h", connection: "keep-alive, x-secret", "x-secret": "1", "keep-alive": "5", "proxy-authorization": "Basic x", te: "trailers", "transfer-encoding": "chunked", upgrade: "h2c", "x-dragonfly-tag": "t", authorization: "Bearer t", accept: "*/*" }),
    ).toEqual({ authorization: "Bearer t", accept: "*/*" });
    expect(downstreamResponseHeaders({ connection: "close", "transfer-encoding": "chunked", "www-authenticate": "Bearer realm=x", "set-cookie": ["a", "b"], "proxy-authenticate": "Basic" })).toEqual({ "www-authenticate": "Bearer realm=x", "set-cookie": ["a", "b"] });
  });
});

describe("proxy.rules", () => {
  const rules = compileRules([
    { regex: "blobs/sha256.*", useTLS: false, redirect: "" },
    { regex: "^http://files\\.example\\.com/", useTLS: true, redirect: "mirror.example.com:8443" },
  ]);
  it("matches against the URL without query and fragment, first match wins", () => {
    expect(matchRule(rules, new URL("http://r/v2/a/blobs/sha256:abc?ns=docker.io"))?.regex).toBe("blobs/sha256.*");
    expect(matchRule(rules, new URL("http://r/v2/a/manifests/latest?x=blobs/sha256"))).toBeUndefined();
    expect(matchRule(rules, new URL("http://files.example.com/a.bin"))?.useTLS).toBe(true);
  });
  it("switches to https and redirects the authority as the rule says", () => {
    const rule = matchRule(rules, new URL("http://files.example.com/a.bin?x=1"));
    expect(downloadUrl(new URL("http://files.example.com/a.bin?x=1"), rule).href).toBe("https://mirror.example.com:8443/a.bin?x=1");
    expect(downloadUrl(new URL("http://r/v2/a/blobs/sha256:abc"), rules[0]).href).toBe("http://r/v2/a/blobs/sha256:abc");
  });
  it("names a bad rule in the config error", () => {
    expect(() => compileRules([{ regex: "(", useTLS: false, redirect: "" }])).toThrow(/proxy\.rules\.0\.regex/);
    expect(() => compileRules([{ regex: "x", useTLS: false, redirect: "http://a/b" }])).toThrow(/proxy\.rules\.0\.redirect/);
  });
});

describe("proxy config section", () => {
  it("is absent unless configured, and fills Dragonfly's defaults when present", () => {
    expect(validateConfig(DaemonConfigSchema, {}).proxy).toBeUndefined();
    const p = validateConfig(DaemonConfigSchema, { proxy: {} }).proxy;
    expect(p).toMatchObject({
      // "" = loopback unless basicAuth is set (resolveDaemonConfig; proxy-intercept.test.ts).
      server: { ip: "", port: 4001, caCert: "", caKey: "" },
      rules: [{ regex: "blobs/sha256.*", useTLS: false, redirect: "" }],
      registryMirror: { addr: "https://index.docker.io", cert: "", enableTaskIDBasedBlobDigest: false, registries: [] },
      hijackHTTPS: { hosts: [] },
      disableBackToSource: false,
      prefetch: false,
      prefetchBandwidthLimit: "10GB",
      readBufferSize: "512KiB",
    });
  });
  it("refuses unknown keys and bad values, naming the key", () => {
    expect(() => validateConfig(DaemonConfigSchema, { proxy: { server: { prot: 1 } } })).toThrow(/proxy\.server\.prot: unknown key/);
    expect(() => validateConfig(DaemonConfigSchema, { proxy: { server: { port: 70000 } } })).toThrow(ConfigError);
    expect(() => validateConfig(DaemonConfigSchema, { proxy: { server: { basicAuth: { username: "", password: "x" } } } })).toThrow(/proxy\.server\.basicAuth\.username/);
    expect(() => validateConfig(DaemonConfigSchema, { proxy: { prefetchBandwidthLimit: "fast" } })).toThrow(/proxy\.prefetchBandwidthLimit/);
    // Registries need their scheme: a bare host:port is what they are there to disambiguate.
    expect(validateConfig(DaemonConfigSchema, { proxy: { registryMirror: { registries: ["http://127.0.0.1:5000", "https://harbor.example.com/cache", "http://[::1]:5000"] } } }).proxy?.registryMirror.registries).toHaveLength(3);
    expect(() => validateConfig(DaemonConfigSchema, { proxy: { registryMirror: { registries: ["http://ok:5000", "127.0.0.1:5000"] } } })).toThrow(/proxy\.registryMirror\.registries\.1: /);
    expect(() => validateConfig(DaemonConfigSchema, { proxy: { registryMirror: { registries: ["ftp://h"] } } })).toThrow(/proxy\.registryMirror\.registries\.0: /);
    expect(() => validateConfig(DaemonConfigSchema, { proxy: { registryMirror: { registries: ["http://h?x=1"] } } })).toThrow(/proxy\.registryMirror\.registries\.0: /);
  });
});
