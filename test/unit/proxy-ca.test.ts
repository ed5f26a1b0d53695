// The interception CA: generated once and reused, configured CAs checked, leaf certificates
// that verify against the CA for DNS names and IP addresses.
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CertificateAuthority } from "../../src/daemon/proxy/ca.js";

const dir = mkdtempSync(join(tmpdir(), "proxy-ca-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const files = { certPath: join(dir, "gen", "ca.crt"), keyPath: join(dir, "gen", "ca.key") };
const none = { caCert: "", caKey: "" };

describe("CertificateAuthority", () => {
  it("generates a CA at first start and reuses it afterwards", async () => {
    const a = await CertificateAuthority.open(none, files);
    expect(statSync(files.keyPath).mode & 0o777).toBe(0o600);
    const b = await CertificateAuthority.open(none, files);
    expect(b.certPem).toBe(a.certPem);
    const ca = new X509Certificate(a.certPem);
    expect(ca.ca).toBe(true);
    expect(ca.subject).toContain("CN=Damselfly proxy CA");
  });

  it("issues leaf certificates per host that verify against the CA", async () => {
    const ca = await CertificateAuthority.open(none, files);
    const caCert = new X509Certificate(ca.certPem);
    for (const host of ["registry.example.com", "127.0.0.1", "[::1]"]) {
      const pem = ca.issue(host).cert;
      const leaf = new X509Certificate(pem.slice(0, pem.indexOf("-----END CERTIFICATE-----") + 25));
      expect(leaf.verify(caCert.publicKey)).toBe(true);
      expect(leaf.checkIssued(caCert)).toBe(true);
      expect(leaf.ca).toBe(false);
      const name = host.replace(/^\[|\]$/g, "");
      if (name.includes(".") && !/^\d/.test(name)) expect(leaf.checkHost(name)).toBe(name);
      else expect(leaf.checkIP(name)).toBe(name);
      expect(leaf.checkHost("other.example.com")).toBeUndefined();
    }
    // Cached: the same context object for the same host.
    expect(ca.contextFor("a.example.com")).toBe(ca.contextFor("A.example.com"));
  });

  it("uses a configured CA and refuses a key that does not belong to it", async () => {
    const one = CertificateAuthority.generate("one");
    const two = CertificateAuthority.generate("two");
    writeFileSync(join(dir, "one.crt"), one.certPem);
    writeFileSync(join(dir, "one.key"), one.keyPem);
    writeFileSync(join(dir, "two.key"), two.keyPem);
    const ca = await CertificateAuthority.open({ caCert: join(dir, "one.crt"), caKey: join(dir, "one.key") }, files);
    expect(ca.certPem).toBe(readFileSync(join(dir, "one.crt"), "utf8"));
    expect(ca.certPath).toBe(join(dir, "one.crt"));
    await expect(CertificateAuthority.open({ caCert: join(dir, "one.crt"), caKey: join(dir, "two.key") }, files)).rejects.toThrow(/does not belong/);
    await expect(CertificateAuthority.open({ caCert: join(dir, "one.crt"), caKey: "" }, files)).rejects.toThrow(/must be set together/);
    await expect(CertificateAuthority.open({ caCert: join(dir, "missing.crt"), caKey: join(dir, "one.key") }, files)).rejects.toThrow(/caCert/);
    writeFileSync(join(dir, "junk.crt"), "not a certificate");
    await expect(CertificateAuthority.open({ caCert: join(dir, "junk.crt"), caKey: join(dir, "one.key") }, files)).rejects.toThrow(/PEM/);
  });
});
