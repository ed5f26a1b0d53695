// The certificate authority for CONNECT interception. A configured CA (proxy.server.caCert /
// caKey) is used as is; otherwise one is generated at first start and kept beside the daemon's
// storage (key mode 0600), so the runtime trusts one stable CA across restarts. Leaf
// certificates per host share one key pair and are cached; signing is the only per-host cost.
//
// node:crypto cannot write X.509, so certificates are built with node-forge (RSA only); keys
// come from node:crypto, which generates them natively.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { dirname } from "node:path";
import { createRequire } from "node:module";
import { createSecureContext, type SecureContext } from "node:tls";
import type * as Forge from "node-forge";
import { ConfigError } from "../../common/config.js";
import { errorMessage } from "../../common/errors.js";

// node-forge is CommonJS that fills its exports at run time: ESM named imports cannot see them.
const forge = createRequire(import.meta.url)("node-forge") as typeof Forge;

const LEAF_CACHE_SIZE = 1024;
const DAY_MS = 86_400_000;

function rsaKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

/** A positive serial number (high bit clear) of 128 random bits, as hex. */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString("hex");
}

export interface CaFiles {
  certPath: string;
  keyPath: string;
}

export class CertificateAuthority {
  private readonly leafKey = rsaKeyPair();
  private readonly leafPublic: Forge.pki.PublicKey;
  private readonly leaves = new Map<string, SecureContext>();

  private constructor(
    readonly certPem: string,
    private readonly cert: Forge.pki.Certificate,
    private readonly key: Forge.pki.rsa.PrivateKey,
    /** Where the CA certificate lives on disk (to hand to runtimes and curl --cacert). */
    readonly certPath: string,
  ) {
    this.leafPublic = forge.pki.publicKeyFromPem(this.leafKey.publicKeyPem);
  }

  /** Loads the configured CA, or the one generated earlier in `generatedDir`, or generates it. */
  static async open(configured: { caCert: string; caKey: string }, generated: CaFiles): Promise<CertificateAuthority> {
    if (Boolean(configured.caCert) !== Boolean(configured.caKey)) throw new ConfigError("proxy.server.caCert and proxy.server.caKey must be set together");
    const files = configured.caCert ? { certPath: configured.caCert, keyPath: configured.caKey } : generated;
    let certPem: string;
    let keyPem: string;
    try {
      [certPem, keyPem] = await Promise.all([readFile(files.certPath, "utf8"), readFile(files.keyPath, "utf8")]);
    } catch (e) {
      if (configured.caCert) throw new ConfigError(`proxy.server.caCert/caKey: ${errorMessage(e)}`);
      ({ certPem, keyPem } = CertificateAuthority.generate());
      await mkdir(dirname(generated.keyPath), { recursive: true, mode: 0o700 });
      await writeFile(generated.keyPath, keyPem, { mode: 0o600 });
      await chmod(generated.keyPath, 0o600);
      await writeFile(generated.certPath, certPem, { mode: 0o644 });
    }
    let cert: Forge.pki.Certificate;
    let key: Forge.pki.rsa.PrivateKey;
    try {
      cert = forge.pki.certificateFromPem(certPem);
      key = forge.pki.privateKeyFromPem(keyPem);
    } catch (e) {
      throw new ConfigError(`proxy CA ${files.certPath}: only RSA certificates and keys in PEM are supported (${errorMessage(e)})`);
    }
    const pub = cert.publicKey as Forge.pki.rsa.PublicKey;
    if (!pub.n || pub.n.compareTo(key.n) !== 0) throw new ConfigError(`proxy CA: the key in ${files.keyPath} does not belong to the certificate ${files.certPath}`);
    return new CertificateAuthority(certPem, cert, key, files.certPath);
  }

  /** A fresh self-signed CA valid for ten years. */
  static generate(commonName = "Damselfly proxy CA"): { certPem: string; keyPem: string } {
    const { privateKeyPem, publicKeyPem } = rsaKeyPair();
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
    cert.serialNumber = serial();
    cert.validity.notBefore = new Date(Date.now() - DAY_MS);
    cert.validity.notAfter = new Date(Date.now() + 3650 * DAY_MS);
    const subject = [
      { name: "commonName", value: commonName },
      { name: "organizationName", value: "Damselfly" },
    ];
    cert.setSubject(subject);
    cert.setIssuer(subject);
    cert.setExtensions([
      { name: "basicConstraints", cA: true, critical: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
      { name: "subjectKeyIdentifier" },
    ]);
    cert.sign(forge.pki.privateKeyFromPem(privateKeyPem), forge.md.sha256.create());
    return { certPem: forge.pki.certificateToPem(cert), keyPem: privateKeyPem };
  }

  /** TLS context presenting a certificate for `host` (DNS name or IP) signed by this CA. */
  contextFor(host: string): SecureContext {
    const name = host.replace(/^\[|\]$/g, "").toLowerCase();
    const hit = this.leaves.get(name);
    if (hit) {
      // Refresh recency for the LRU.
      this.leaves.delete(name);
      this.leaves.set(name, hit);
      return hit;
    }
    const ctx = createSecureContext(this.issue(name));
    this.leaves.set(name, ctx);
    if (this.leaves.size > LEAF_CACHE_SIZE) {
      const oldest = this.leaves.keys().next().value;
      if (oldest !== undefined) this.leaves.delete(oldest);
    }
    return ctx;
  }

  /** Key and certificate chain (leaf + CA) for `host`, PEM. */
  issue(host: string): { key: string; cert: string } {
    const name = host.replace(/^\[|\]$/g, "").toLowerCase();
    return { key: this.leafKey.privateKeyPem, cert: `${this.leafPem(name)}${this.certPem}` };
  }

  private leafPem(name: string): string {
    const cert = forge.pki.createCertificate();
    cert.publicKey = this.leafPublic;
    cert.serialNumber = serial();
    cert.validity.notBefore = new Date(Date.now() - DAY_MS);
    cert.validity.notAfter = new Date(Date.now() + 365 * DAY_MS);
    cert.setSubject([{ name: "commonName", value: name.slice(0, 64) }]);
    cert.setIssuer(this.cert.subject.attributes);
    const ip = isIP(name);
    const exts: object[] = [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: [ip ? { type: 7, ip: name } : { type: 2, value: name }] },
    ];
    // The authority key id must equal the CA's own subject key id, or chain building fails.
    const ski: { subjectKeyIdentifier?: string } | undefined = this.cert.getExtension("subjectKeyIdentifier");
    if (ski?.subjectKeyIdentifier) exts.push({ name: "authorityKeyIdentifier", keyIdentifier: forge.util.hexToBytes(ski.subjectKeyIdentifier) });
    cert.setExtensions(exts);
    cert.sign(this.key, forge.md.sha256.create());
    return forge.pki.certificateToPem(cert);
  }
}
