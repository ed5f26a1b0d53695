// The interception CA: generated once and reused, one year of life and name constraints naming
// only the intercepted hosts, replaced when those hosts change; configured CAs checked; leaf
// certificates that verify against the CA for DNS names and IP addresses.
// Before @peculiar/x509 (see src/daemon/proxy/ca.ts).
import "reflect-metadata";
import { webcrypto as crypto, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import { id_ce_nameConstraints, NameConstraints } from "@peculiar/asn1-x509";
import * as x509 from "@peculiar/x509";
import { afterAll, describe, expect, it } from "vitest";
import { CertificateAuthority } from "../../src/daemon/proxy/ca.js";
import type { NameScope } from "../../src/daemon/proxy/intercept.js";

const dir = mkdtempSync(join(tmpdir(), "proxy-ca-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const files = { certPath: join(dir, "gen", "ca.crt"), keyPath: join(dir, "gen", "ca.key") };
const none = { caCert: "", caKey: "" };
const scope: NameScope = { dnsNames: ["registry.example.com"], ips: ["127.0.0.1", "::1"], anyDnsName: false };
const DAY_MS = 86_400_000;

/** The CA's name constraints as "type:value" lists. */
function constraintsOf(pem: string): { permitted: string[]; excluded: string[] } | undefined {
  const ext = new x509.X509Certificate(pem).getExtension(id_ce_nameConstraints);
  if (!ext) return undefined;
  expect(ext.critical).toBe(true);
  const nc = AsnConvert.parse(ext.value, NameConstraints);
  const list = (t: typeof nc.permittedSubtrees) => (t ?? []).map((s) => (s.base.dNSName !== undefined ? `dns:${s.base.dNSName}` : `ip:${s.base.iPAddress ?? "?"}`));
  return { permitted: list(nc.permittedSubtrees), excluded: list(nc.excludedSubtrees) };
}

describe("CertificateAuthority", () => {
  it("generates a one-year CA constrained to the intercepted hosts at first start and reuses it afterwards", async () => {
    const a = await CertificateAuthority.open(none, files, scope);
    expect(a.generated).toBe(true);
    expect(statSync(files.keyPath).mode & 0o777).toBe(0o600);
    const b = await CertificateAuthority.open(none, files, scope);
    expect(b.generated).toBe(false);
    expect(b.certPem).toBe(a.certPem);
    const ca = new X509Certificate(a.certPem);
    expect(ca.ca).toBe(true);
    expect(ca.subject).toContain("CN=Damselfly proxy CA");
    const lifeDays = (Date.parse(ca.validTo) - Date.parse(ca.validFrom)) / DAY_MS;
    expect(lifeDays).toBeGreaterThan(300);
    expect(lifeDays).toBeLessThanOrEqual(366);
    expect(constraintsOf(a.certPem)).toEqual({ permitted: ["dns:registry.example.com", "ip:127.0.0.1/32", "ip:::1/128"], excluded: [] });
  });

  it("replaces the generated CA when the intercepted hosts change", async () => {
    const before = readFileSync(files.certPath, "utf8");
    const wider: NameScope = { dnsNames: ["other.example.com", "registry.example.com"], ips: [], anyDnsName: false };
    const c = await CertificateAuthority.open(none, files, wider);
    expect(c.generated).toBe(true);
    expect(c.certPem).not.toBe(before);
    // No intercepted IP: every IP address is excluded rather than left unconstrained.
    expect(constraintsOf(c.certPem)).toEqual({ permitted: ["dns:other.example.com", "dns:registry.example.com"], excluded: ["ip:0.0.0.0/0", "ip:::/0"] });
    // A hijack regex that is not a literal host: DNS names cannot be listed, IPs stay excluded.
    const loose = await CertificateAuthority.generate({ dnsNames: [], ips: [], anyDnsName: true });
    expect(constraintsOf(loose.certPem)).toEqual({ permitted: [], excluded: ["ip:0.0.0.0/0", "ip:::/0"] });
    await CertificateAuthority.open(none, files, scope);
  });

  it("issues leaf certificates per host that verify against the CA", async () => {
    const ca = await CertificateAuthority.open(none, files, scope);
    const caCert = new X509Certificate(ca.certPem);
    for (const host of ["registry.example.com", "127.0.0.1", "[::1]"]) {
      const pem = (await ca.issue(host)).cert;
      const leaf = new X509Certificate(pem.slice(0, pem.indexOf("-----END CERTIFICATE-----") + 25));
      expect(leaf.verify(caCert.publicKey)).toBe(true);
      expect(leaf.checkIssued(caCert)).toBe(true);
      expect(leaf.ca).toBe(false);
      expect(Date.parse(leaf.validTo)).toBeLessThanOrEqual(Date.parse(caCert.validTo));
      const name = host.replace(/^\[|\]$/g, "");
      if (name.includes(".") && !/^\d/.test(name)) expect(leaf.checkHost(name)).toBe(name);
      else expect(leaf.checkIP(name)).toBe(name);
      expect(leaf.checkHost("other.example.com")).toBeUndefined();
    }
    // Cached: the same context for the same host.
    expect(await ca.contextFor("a.example.com")).toBe(await ca.contextFor("A.example.com"));
  });

  it("uses a configured CA (RSA or EC) and refuses a key that does not belong to it", async () => {
    const one = await CertificateAuthority.generate(scope, "one");
    const two = await CertificateAuthority.generate(scope, "two");
    writeFileSync(join(dir, "one.crt"), one.certPem);
    writeFileSync(join(dir, "one.key"), one.keyPem);
    writeFileSync(join(dir, "two.key"), two.keyPem);
    const ca = await CertificateAuthority.open({ caCert: join(dir, "one.crt"), caKey: join(dir, "one.key") }, files, scope);
    expect(ca.certPem).toBe(readFileSync(join(dir, "one.crt"), "utf8"));
    expect(ca.certPath).toBe(join(dir, "one.crt"));
    expect(ca.generated).toBe(false);
    await expect(CertificateAuthority.open({ caCert: join(dir, "one.crt"), caKey: join(dir, "two.key") }, files, scope)).rejects.toThrow(/does not belong/);
    await expect(CertificateAuthority.open({ caCert: join(dir, "one.crt"), caKey: "" }, files, scope)).rejects.toThrow(/must be set together/);
    await expect(CertificateAuthority.open({ caCert: join(dir, "missing.crt"), caKey: join(dir, "one.key") }, files, scope)).rejects.toThrow(/caCert/);
    writeFileSync(join(dir, "junk.crt"), "not a certificate");
    await expect(CertificateAuthority.open({ caCert: join(dir, "junk.crt"), caKey: join(dir, "one.key") }, files, scope)).rejects.toThrow(/PEM/);
    // An operator's RSA CA (as `openssl req -x509 -newkey rsa:2048` makes) signs leaves too.
    const rsaKeys = await crypto.subtle.generateKey({ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 }, true, ["sign", "verify"]);
    const rsaCa = await x509.X509CertificateGenerator.createSelfSigned({ name: "CN=operator", keys: rsaKeys, extensions: [new x509.BasicConstraintsExtension(true, undefined, true)] }, crypto);
    writeFileSync(join(dir, "rsa.crt"), rsaCa.toString("pem"));
    writeFileSync(join(dir, "rsa.key"), x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", rsaKeys.privateKey), "PRIVATE KEY"));
    const rsa = await CertificateAuthority.open({ caCert: join(dir, "rsa.crt"), caKey: join(dir, "rsa.key") }, files, scope);
    const pem = (await rsa.issue("registry.example.com")).cert;
    const leaf = new X509Certificate(pem.slice(0, pem.indexOf("-----END CERTIFICATE-----") + 25));
    expect(leaf.verify(new X509Certificate(rsa.certPem).publicKey)).toBe(true);
  });
});
