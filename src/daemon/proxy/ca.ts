// The certificate authority for CONNECT interception. A configured CA (proxy.server.caCert /
// caKey) is used as is; otherwise one is generated and kept beside the daemon's storage (key
// mode 0600), so runtimes trust one stable CA across restarts. Leaf certificates per host share
// one key pair and are cached; signing is the only per-host cost.
//
// A generated CA lives one year and carries X.509 name constraints (RFC 5280 4.2.1.10) naming
// only the hosts the proxy intercepts (intercept.ts): a CA key stolen from the disk then cannot
// vouch for anyone else's site. It is generated again when it nears its end or when the
// intercepted hosts change (its constraints would refuse the new ones); runtimes must then be
// given the new ca.crt, which the daemon logs.
//
// Certificates are built with @peculiar/x509 over node:crypto's WebCrypto; the name-constraints
// extension, which @peculiar/x509 has no class for, is encoded with its ASN.1 schema package.
// @peculiar/x509 resolves its codecs through tsyringe, which needs the Reflect metadata polyfill
// loaded first (the library's README says so; it does not depend on it itself).
import "reflect-metadata";
import { createPrivateKey, randomBytes, webcrypto, X509Certificate as NodeX509, type KeyObject } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { dirname } from "node:path";
import { createSecureContext, type SecureContext } from "node:tls";
import { AsnConvert } from "@peculiar/asn1-schema";
import { GeneralName as AsnGeneralName, GeneralSubtree, GeneralSubtrees, id_ce_nameConstraints, NameConstraints } from "@peculiar/asn1-x509";
import * as x509 from "@peculiar/x509";
import { ConfigError } from "../../common/config.js";
import { errorMessage } from "../../common/errors.js";
import type { NameScope } from "./intercept.js";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
type Algorithm = webcrypto.Algorithm;

const crypto = webcrypto;
const LEAF_CACHE_SIZE = 1024;
const DAY_MS = 86_400_000;
/** A generated CA's life: one year (notBefore is backdated a day for clock skew). */
export const CA_LIFE_DAYS = 365;
/** A generated CA this close to its end is replaced at start. */
const RENEW_BEFORE_MS = 30 * DAY_MS;
const LEAF_LIFE_MS = 90 * DAY_MS;
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const EC_SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

/** A positive serial number (high bit clear) of 128 random bits, as hex. */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString("hex");
}

/** The WebCrypto signing key and algorithm for a PEM private key (RSA or EC). */
async function signingKeyOf(key: KeyObject): Promise<{ key: CryptoKey; algorithm: Algorithm }> {
  const der = key.export({ type: "pkcs8", format: "der" });
  if (key.asymmetricKeyType === "rsa") {
    const algorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    return { key: await crypto.subtle.importKey("pkcs8", der, algorithm, false, ["sign"]), algorithm };
  }
  if (key.asymmetricKeyType === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === "prime256v1" ? "P-256" : curve === "secp384r1" ? "P-384" : curve === "secp521r1" ? "P-521" : undefined;
    if (!namedCurve) throw new Error(`unsupported EC curve ${curve ?? "?"}`);
    return { key: await crypto.subtle.importKey("pkcs8", der, { name: "ECDSA", namedCurve }, false, ["sign"]), algorithm: EC_SIGN };
  }
  throw new Error(`unsupported key type ${key.asymmetricKeyType ?? "?"} (RSA or EC expected)`);
}

/**
 * The name-constraints extension for `scope`. Per name type, a type with no permitted subtree is
 * unconstrained, so a type the proxy never intercepts is excluded outright: no IP subtree ->
 * 0.0.0.0/0 and ::/0 excluded; no DNS subtree -> the empty dNSName, which matches every name,
 * excluded.
 *
 * When a hijackHTTPS regx is not a literal host (`anyDnsName`), the DNS names it matches cannot
 * be listed, and a permitted DNS subtree would make interception of them fail: DNS names are
 * then left unconstrained and only the IP constraint remains (IP addresses only a regex matches
 * are tunnelled, never intercepted). The extension is always present and critical.
 */
export function nameConstraintsExtension(scope: NameScope): x509.Extension {
  const permitted: AsnGeneralName[] = [];
  const excluded: AsnGeneralName[] = [];
  if (!scope.anyDnsName) {
    if (scope.dnsNames.length > 0) for (const d of scope.dnsNames) permitted.push(new AsnGeneralName({ dNSName: d }));
    else excluded.push(new AsnGeneralName({ dNSName: "" }));
  }
  if (scope.ips.length > 0) for (const ip of scope.ips) permitted.push(new AsnGeneralName({ iPAddress: `${ip}/${isIP(ip) === 4 ? 32 : 128}` }));
  else excluded.push(new AsnGeneralName({ iPAddress: "0.0.0.0/0" }), new AsnGeneralName({ iPAddress: "::/0" }));
  const subtrees = (names: AsnGeneralName[]) => (names.length > 0 ? new GeneralSubtrees(names.map((base) => new GeneralSubtree({ base }))) : undefined);
  const value = new NameConstraints({ permittedSubtrees: subtrees(permitted), excludedSubtrees: subtrees(excluded) });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(value));
}

/** Whether a stored CA carries exactly the constraints `scope` asks for. */
function sameConstraints(cert: x509.X509Certificate, scope: NameScope): boolean {
  const have = cert.getExtension(id_ce_nameConstraints);
  if (!have) return false;
  return Buffer.from(have.value).equals(Buffer.from(nameConstraintsExtension(scope).value));
}

function pemOfKey(der: ArrayBuffer): string {
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

export interface CaFiles {
  certPath: string;
  keyPath: string;
}

export class CertificateAuthority {
  private leafKeys: Promise<{ keys: CryptoKeyPair; pem: string }> | undefined;
  private readonly leaves = new Map<string, Promise<SecureContext>>();

  private constructor(
    readonly certPem: string,
    private readonly cert: x509.X509Certificate,
    private readonly signer: { key: CryptoKey; algorithm: Algorithm },
    /** Where the CA certificate lives on disk (to hand to runtimes and curl --cacert). */
    readonly certPath: string,
    /** Whether this start generated the CA (runtimes must be given the new certificate). */
    readonly generated: boolean,
  ) {}

  /**
   * Loads the configured CA, or the one generated earlier in `generated` when it is still valid
   * for a month and constrained to `scope`, or generates a new one there.
   */
  static async open(configured: { caCert: string; caKey: string }, generated: CaFiles, scope: NameScope): Promise<CertificateAuthority> {
    if (Boolean(configured.caCert) !== Boolean(configured.caKey)) throw new ConfigError("proxy.server.caCert and proxy.server.caKey must be set together");
    const files = configured.caCert ? { certPath: configured.caCert, keyPath: configured.caKey } : generated;
    let pems: [string, string] | undefined;
    try {
      pems = await Promise.all([readFile(files.certPath, "utf8"), readFile(files.keyPath, "utf8")]);
    } catch (e) {
      if (configured.caCert) throw new ConfigError(`proxy.server.caCert/caKey: ${errorMessage(e)}`);
    }
    if (pems && !configured.caCert) {
      const old = CertificateAuthority.parse(pems[0], pems[1], files);
      if (!old || old.cert.notAfter.getTime() - Date.now() < RENEW_BEFORE_MS || !sameConstraints(old.cert, scope)) pems = undefined;
    }
    let fresh = false;
    if (!pems) {
      const g = await CertificateAuthority.generate(scope);
      await mkdir(dirname(generated.keyPath), { recursive: true, mode: 0o700 });
      await writeFile(generated.keyPath, g.keyPem, { mode: 0o600 });
      await chmod(generated.keyPath, 0o600);
      await writeFile(generated.certPath, g.certPem, { mode: 0o644 });
      pems = [g.certPem, g.keyPem];
      fresh = true;
    }
    const [certPem, keyPem] = pems;
    const parsed = CertificateAuthority.parse(certPem, keyPem, files);
    if (!parsed) throw new ConfigError(`proxy CA: the key in ${files.keyPath} does not belong to the certificate ${files.certPath}`);
    let signer: { key: CryptoKey; algorithm: Algorithm };
    try {
      signer = await signingKeyOf(parsed.key);
    } catch (e) {
      throw new ConfigError(`proxy CA ${files.keyPath}: ${errorMessage(e)}`);
    }
    return new CertificateAuthority(certPem, parsed.cert, signer, files.certPath, fresh);
  }

  /** Certificate and key from PEM; undefined when the key does not belong to the certificate. */
  private static parse(certPem: string, keyPem: string, files: CaFiles): { cert: x509.X509Certificate; key: KeyObject } | undefined {
    let node: NodeX509;
    let key: KeyObject;
    let cert: x509.X509Certificate;
    try {
      node = new NodeX509(certPem);
      key = createPrivateKey(keyPem);
      cert = new x509.X509Certificate(certPem);
    } catch (e) {
      throw new ConfigError(`proxy CA ${files.certPath}: expected a certificate and a private key in PEM (${errorMessage(e)})`);
    }
    return node.checkPrivateKey(key) ? { cert, key } : undefined;
  }

  /** A fresh self-signed CA (ECDSA P-256) valid for CA_LIFE_DAYS, constrained to `scope`. */
  static async generate(scope: NameScope, commonName = "Damselfly proxy CA"): Promise<{ certPem: string; keyPem: string }> {
    const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: serial(),
        name: [{ CN: [commonName] }, { O: ["Damselfly"] }],
        notBefore: new Date(now - DAY_MS),
        notAfter: new Date(now + CA_LIFE_DAYS * DAY_MS),
        keys,
        signingAlgorithm: EC_SIGN,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
          nameConstraintsExtension(scope),
        ],
      },
      crypto,
    );
    return { certPem: cert.toString("pem"), keyPem: pemOfKey(await crypto.subtle.exportKey("pkcs8", keys.privateKey)) };
  }

  /** TLS context presenting a certificate for `host` (DNS name or IP) signed by this CA. */
  contextFor(host: string): Promise<SecureContext> {
    const name = host.replace(/^\[|\]$/g, "").toLowerCase();
    const hit = this.leaves.get(name);
    if (hit) {
      // Refresh recency for the LRU.
      this.leaves.delete(name);
      this.leaves.set(name, hit);
      return hit;
    }
    const ctx = this.issue(name).then((pems) => createSecureContext(pems));
    // A failed issue is not cached: the next CONNECT tries again.
    ctx.catch(() => this.leaves.delete(name));
    this.leaves.set(name, ctx);
    if (this.leaves.size > LEAF_CACHE_SIZE) {
      const oldest = this.leaves.keys().next().value;
      if (oldest !== undefined) this.leaves.delete(oldest);
    }
    return ctx;
  }

  /** The authority key id must equal the CA's own subject key id, or chain building fails. */
  private async authorityKeyId(): Promise<x509.AuthorityKeyIdentifierExtension> {
    const ski = this.cert.getExtension(x509.SubjectKeyIdentifierExtension);
    return ski ? new x509.AuthorityKeyIdentifierExtension(ski.keyId) : x509.AuthorityKeyIdentifierExtension.create(this.cert.publicKey, false, crypto);
  }

  /** Key and certificate chain (leaf + CA) for `host`, PEM. */
  async issue(host: string): Promise<{ key: string; cert: string }> {
    const name = host.replace(/^\[|\]$/g, "").toLowerCase();
    this.leafKeys ??= crypto.subtle.generateKey(EC, true, ["sign", "verify"]).then(async (keys) => ({ keys, pem: pemOfKey(await crypto.subtle.exportKey("pkcs8", keys.privateKey)) }));
    const { keys, pem } = await this.leafKeys;
    const now = Date.now();
    const leaf = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial(),
        // An IP leaf has no CN: OpenSSL checks a CN that looks like a host name against the
        // CA's DNS name constraints, and the CA may exclude every DNS name. Its SAN is then
        // the only name and critical (RFC 5280 4.2.1.6).
        subject: isIP(name) ? [] : [{ CN: [name.slice(0, 64)] }],
        issuer: this.cert.subjectName,
        notBefore: new Date(now - DAY_MS),
        // Never past the CA's own end.
        notAfter: new Date(Math.min(now + LEAF_LIFE_MS, this.cert.notAfter.getTime())),
        publicKey: keys.publicKey,
        signingKey: this.signer.key,
        signingAlgorithm: this.signer.algorithm,
        extensions: [
          new x509.BasicConstraintsExtension(false),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension([isIP(name) ? { type: "ip", value: name } : { type: "dns", value: name }], Boolean(isIP(name))),
          await this.authorityKeyId(),
        ],
      },
      crypto,
    );
    return { key: pem, cert: `${leaf.toString("pem")}\n${this.certPem}` };
  }
}
