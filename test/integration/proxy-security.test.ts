// The proxy's edges: CONNECT interception with the CA generated at first start (curl trusts
// it only with --cacert), proxy basic auth, and malformed or ambiguous HTTP framing refused
// before anything reaches an upstream.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { connect, type AddressInfo } from "node:net";
import { createSecureContext } from "node:tls";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import { CertificateAuthority } from "../../src/daemon/proxy/ca.js";
import { cleanupTempDirs, tempDir, testDaemonConfig } from "../helpers/swarm.js";
import { blobContent, startFakeRegistry, type FakeRegistry } from "./proxy-fixtures.js";

const CURL = spawnSync("curl", ["--version"]).status === 0;
if (!CURL) console.warn("proxy-security: curl is not installed: the CONNECT interception test is skipped");

/** curl, asynchronously: the proxy under test runs in this process and must keep serving. */
function curl(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn("curl", args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

/** Sends raw bytes and returns everything the server wrote until it closed (or 3 s passed). */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const done = () => resolve(Buffer.concat(chunks).toString("latin1"));
    s.setTimeout(3000, () => {
      s.destroy();
      done();
    });
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("close", done);
    s.on("error", (e: NodeJS.ErrnoException) => (e.code === "ECONNRESET" ? done() : reject(e)));
    s.write(bytes);
  });
}

const statusOf = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

describe("proxy edges", () => {
  let reg: FakeRegistry;
  let daemon: DaemonHandle;
  let caPath: string;
  let origin: HttpsServer;
  let originPort: number;
  let originCaPath: string;
  const file = blobContent(300_000, 31);

  beforeAll(async () => {
    reg = await startFakeRegistry();
    // An HTTPS origin with its own CA, which the proxy trusts through registryMirror.cert.
    const dir = tempDir("proxy-sec");
    const originScope = { dnsNames: ["localhost"], ips: ["127.0.0.1"], anyDnsName: false };
    const originCaFiles = await CertificateAuthority.generate(originScope, "test origin CA");
    writeFileSync(join(dir, "origin-ca.crt"), originCaFiles.certPem);
    writeFileSync(join(dir, "origin-ca.key"), originCaFiles.keyPem);
    originCaPath = join(dir, "origin-ca.crt");
    const originCa = await CertificateAuthority.open({ caCert: originCaPath, caKey: join(dir, "origin-ca.key") }, { certPath: "", keyPath: "" }, originScope);
    // One certificate naming both 127.0.0.1 and localhost would need two SANs: SNI picks.
    const byName = { "127.0.0.1": await originCa.issue("127.0.0.1"), localhost: await originCa.issue("localhost") };
    origin = createHttpsServer({ ...byName["127.0.0.1"], SNICallback: (name, cb) => cb(null, createSecureContext(name === "localhost" ? byName.localhost : byName["127.0.0.1"])) }, (req, res) => {
      if (req.url === "/file.bin") return res.writeHead(200, { "content-length": file.length }).end(file);
      res.writeHead(404).end("nope");
    });
    await new Promise<void>((r) => origin.listen(0, "127.0.0.1", () => r()));
    originPort = (origin.address() as AddressInfo).port;

    const config = testDaemonConfig({
      name: "proxy-sec",
      schedulers: [],
      overrides: { proxy: { server: { ip: "127.0.0.1", port: 0, basicAuth: { username: "alice", password: "s3cret" } }, registryMirror: { addr: reg.url, cert: join(dir, "origin-ca.crt") } } },
    });
    daemon = await startDaemon(config, silentLogger());
    caPath = join(config.resolved.storageDir, "proxy", "ca.crt");
  });

  afterAll(async () => {
    await daemon?.close();
    await reg?.close();
    await new Promise<void>((r) => (origin ? origin.close(() => r()) : r()));
    cleanupTempDirs();
  });

  const auth = `Proxy-Authorization: Basic ${Buffer.from("alice:s3cret").toString("base64")}\r\n`;

  it("generated a CA at first start, kept with a private key file", () => {
    const pem = readFileSync(caPath, "utf8");
    expect(pem).toContain("BEGIN CERTIFICATE");
    const keyPath = caPath.replace(/ca\.crt$/, "ca.key");
    expect(readFileSync(keyPath, "utf8")).toContain("PRIVATE KEY");
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    // Constrained to what the proxy intercepts: the mirror's host, 127.0.0.1 (no DNS name).
    const text = spawnSync("openssl", ["x509", "-noout", "-ext", "nameConstraints"], { input: pem, encoding: "utf8" });
    expect(text.stdout).toMatch(/critical/);
    expect(text.stdout).toMatch(/Permitted:\s+IP:127\.0\.0\.1\/255\.255\.255\.255/);
  });

  (CURL ? it : it.skip)("intercepts CONNECT: curl trusts the origin's bytes only with the generated CA", async () => {
    const proxy = `http://alice:s3cret@127.0.0.1:${daemon.proxyPort}`;
    const url = `https://127.0.0.1:${originPort}/file.bin`;
    const out = join(tempDir("curl"), "out");
    const ok = await curl(["-sS", "--fail", "--proxy", proxy, "--cacert", caPath, "-o", out, url]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(readFileSync(out).equals(file)).toBe(true);
    // A second host name on the same CA: the certificate is per host.
    const missing = await curl(["-sS", "--proxy", proxy, "--cacert", caPath, "-o", "/dev/null", "-w", "%{http_code}", `https://127.0.0.1:${originPort}/other`]);
    expect(missing.stdout).toBe("404");
    // Without the CA, certificate verification fails (curl exit 60).
    const bad = await curl(["-sS", "--proxy", proxy, "-o", "/dev/null", url]);
    expect(bad.status).toBe(60);
    // Without proxy credentials the tunnel is refused.
    const anon = await curl(["-sS", "--proxy", `http://127.0.0.1:${daemon.proxyPort}`, "--cacert", caPath, "-o", "/dev/null", url]);
    expect(anon.status).not.toBe(0);
    expect(anon.stderr).toMatch(/407/);
  });

  (CURL ? it : it.skip)("tunnels a CONNECT to a host it does not intercept: the origin's own certificate reaches curl", async () => {
    const proxy = `http://alice:s3cret@127.0.0.1:${daemon.proxyPort}`;
    // localhost is neither the mirror's host nor named by a rule or hijackHTTPS: not intercepted.
    const url = `https://localhost:${originPort}/file.bin`;
    const out = join(tempDir("curl"), "out");
    const ok = await curl(["-sS", "--fail", "--proxy", proxy, "--cacert", originCaPath, "-o", out, url]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(readFileSync(out).equals(file)).toBe(true);
    // The proxy's CA does not vouch for it: nothing was re-signed on the way.
    const viaOurCa = await curl(["-sS", "--proxy", proxy, "--cacert", caPath, "-o", "/dev/null", url]);
    expect(viaOurCa.status).toBe(60);
  });

  it.each([
    ["10/8", "10.20.30.40", "10.20.30.40:443"],
    ["172.16/12", "172.20.0.5", "172.20.0.5:443"],
    ["192.168/16", "192.168.100.1", "192.168.100.1:5000"],
    ["100.64/10", "100.64.1.2", "100.64.1.2:443"],
    ["fc00::/7", "fd00:1234::5", "[fd00:1234::5]:443"],
  ])("refuses client-chosen upstreams in %s, forwarded or tunnelled, naming the address", async (_range, ip, authority) => {
    const get = await raw(daemon.proxyPort, `GET http://${authority}/v2/a/blobs/sha256:${"0".repeat(64)} HTTP/1.1\r\nHost: ${authority}\r\n${auth}Connection: close\r\n\r\n`);
    expect(statusOf(get)).toBe(403);
    expect(get).toContain(ip);
    expect(get).toMatch(/SSRF policy/);
    const tunnel = await raw(daemon.proxyPort, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`);
    expect(statusOf(tunnel)).toBe(403);
  });

  it("requires proxy basic auth and accepts only the right credentials", async () => {
    const none = await raw(daemon.proxyPort, "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(statusOf(none)).toBe(407);
    expect(none).toMatch(/Proxy-Authenticate: Basic realm="damselfly"/i);
    const wrong = await raw(daemon.proxyPort, `GET /v2/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${Buffer.from("alice:s3creT").toString("base64")}\r\nConnection: close\r\n\r\n`);
    expect(statusOf(wrong)).toBe(407);
    const right = await raw(daemon.proxyPort, `GET /v2/ HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`);
    expect(statusOf(right)).toBe(200);
  });

  it("refuses request smuggling, duplicate Host and oversized headers before any upstream sees them", async () => {
    const before = reg.requests.length;
    const cases: Array<[string, string, number]> = [
      ["Content-Length with Transfer-Encoding", `POST /v2/smuggled HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v2/inner HTTP/1.1\r\nHost: x\r\n\r\n`, 400],
      ["Transfer-Encoding with Content-Length", `POST /v2/smuggled HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n`, 400],
      ["two different Content-Lengths", `POST /v2/smuggled HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc`, 400],
      ["obfuscated Transfer-Encoding", `POST /v2/smuggled HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`, 400],
      ["bad chunk size", `POST /v2/smuggled HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, 400],
      ["duplicate Host", `GET /v2/smuggled HTTP/1.1\r\nHost: a\r\nHost: b\r\n${auth}Connection: close\r\n\r\n`, 400],
      ["header block over 32 KiB", `GET /v2/smuggled HTTP/1.1\r\nHost: x\r\n${auth}X-Big: ${"a".repeat(40_000)}\r\n\r\n`, 431],
      ["a CONNECT target that is not host:port", `CONNECT /etc/passwd HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, 400],
    ];
    for (const [name, bytes, status] of cases) {
      const res = await raw(daemon.proxyPort, bytes);
      expect(statusOf(res), name).toBe(status);
      // One answer, then the connection is closed: a smuggled second request gets none.
      expect(res.match(/HTTP\/1\.1 \d{3}/g)?.length, name).toBe(1);
    }
    expect(reg.requests.slice(before).filter((r) => r.includes("smuggled") || r.includes("inner"))).toEqual([]);
  });
});
