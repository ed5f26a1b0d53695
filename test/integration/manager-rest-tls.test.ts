// The manager's REST API over TLS (Dragonfly's server.rest.tls, issue 21): with a cert and key it
// answers HTTPS, verified against the CA that signed it, and refuses plain HTTP; half a pair or an
// unreadable file fails the start with the key named.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { startManager } from "../../src/manager/server.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A CA and a server cert for 127.0.0.1 signed by it, made by the openssl CLI. */
function pki(dir: string): { ca: string; cert: string; key: string } {
  const f = (n: string) => join(dir, n);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=test CA");
  ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=manager");
  writeFileSync(f("ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  ssl("x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.pem"), "-days", "2", "-extfile", f("ext.cnf"));
  return { ca: f("ca.pem"), cert: f("server.pem"), key: f("server.key") };
}

function config(dataDir: string, tls: Record<string, string>) {
  return {
    server: { dataDir, rest: { addr: "127.0.0.1:0", tls }, grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 } } },
    metrics: { enable: false },
  };
}

describe("manager REST over TLS", () => {
  it("serves HTTPS verified by its CA and refuses plain HTTP", async () => {
    const dir = mkdtempSync(join(tmpdir(), "manager-tls-"));
    dirs.push(dir);
    const p = pki(dir);
    const m = await startManager(config(join(dir, "data"), { cert: p.cert, key: p.key }), { logger: silentLogger(), env: {} });
    try {
      const trusted = new Agent({ connect: { ca: readFileSync(p.ca) } });
      const r = await request(`https://127.0.0.1:${m.restPort}/healthy`, { dispatcher: trusted });
      expect(r.statusCode).toBe(200);
      await r.body.dump();
      await trusted.close();
      // Without the CA the server's certificate is not trusted.
      await expect(request(`https://127.0.0.1:${m.restPort}/healthy`)).rejects.toThrow(/certificate/i);
      // Plain HTTP gets no API answer.
      const plain = await request(`http://127.0.0.1:${m.restPort}/healthy`).then(
        (res) => res.statusCode,
        () => "refused",
      );
      expect(plain).not.toBe(200);
    } finally {
      await m.close();
    }
  });

  it("names the missing half of the pair and an unreadable file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "manager-tls-bad-"));
    dirs.push(dir);
    await expect(startManager(config(join(dir, "a"), { cert: join(dir, "x.pem") }), { logger: silentLogger(), env: {} })).rejects.toThrow(/server\.rest\.tls: cert and key must be set together \(key is missing\)/);
    await expect(startManager(config(join(dir, "b"), { cert: join(dir, "nope.pem"), key: join(dir, "nope.key") }), { logger: silentLogger(), env: {} })).rejects.toThrow(/server\.rest\.tls\.cert: cannot read .*nope\.pem/);
  });
});
