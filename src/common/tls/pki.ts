// The cluster's certificate authority and the certificates it issues to components, built with
// @peculiar/x509 over node:crypto's WebCrypto (ECDSA P-256: fast to generate at every `up`,
// accepted by every TLS stack Dragonfly uses). A leaf certificate names its holder's role and
// name twice: in a SAN URI `damselfly://<role>/<name>` (what our servers check) and in the
// subject (OU=<role>, CN=<name>), so an operator's own PKI (cert-manager, Vault) can issue
// certificates our servers understand by setting the OU alone.
// @peculiar/x509 resolves its ASN.1 codecs through tsyringe, which needs the Reflect metadata
// polyfill loaded first (the library's README says so; it does not depend on it itself).
import "reflect-metadata";
import { webcrypto, X509Certificate as NodeX509Certificate } from "node:crypto";
import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";
import { ROLES, type Role } from "./identity.js";

type CryptoKey = webcrypto.CryptoKey;

const crypto = webcrypto;
// Node's WebCrypto, so that keys are generated and signatures made natively.
x509.cryptoProvider.set(crypto);

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;

/** PEM texts of a certificate and its private key (PKCS#8). */
export interface CertificatePem {
  cert: string;
  key: string;
}

export interface LeafRequest {
  role: Role;
  /** The holder's name (hostname of a daemon, "scheduler", ...), CN and the SAN URI's path. */
  name: string;
  /** IPs and DNS names the holder serves on, for clients that check the server's address (Dragonfly's do). */
  addresses?: string[];
  /** Days of validity; 365 by default. */
  days?: number;
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey("pkcs8", key));
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  // An hour back: clocks of the hosts in a cluster differ a little.
  const now = Date.now();
  return { notBefore: new Date(now - 3_600_000), notAfter: new Date(now + days * DAY_MS) };
}

/** A new cluster CA (self-signed, may sign leaves only: path length 0). */
export async function createClusterCa(commonName = "Damselfly cluster CA", days = 3650): Promise<CertificatePem> {
  const keys = (await crypto.subtle.generateKey(EC, true, ["sign", "verify"]));
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${commonName}, O=damselfly`,
    keys,
    signingAlgorithm: SIGNING,
    ...validity(days),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString("pem"), key: await keyPem(keys.privateKey) };
}

async function importCaKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return crypto.subtle.importKey("pkcs8", der, EC, false, ["sign"]);
}

/**
 * A certificate for one component, signed by `ca`. It serves both ends of mTLS (server and
 * client auth): every component is a gRPC server and a client of another.
 */
export async function issueLeaf(ca: CertificatePem, req: LeafRequest): Promise<CertificatePem> {
  if (!ROLES.includes(req.role)) throw new Error(`unknown role "${req.role}"`);
  if (!/^[A-Za-z0-9._-]{1,253}$/.test(req.name)) throw new Error(`certificate name "${req.name}" must be a hostname-like word`);
  const caCert = new x509.X509Certificate(ca.cert);
  const keys = (await crypto.subtle.generateKey(EC, true, ["sign", "verify"]));
  const names: x509.JsonGeneralName[] = [{ type: "url", value: `damselfly://${req.role}/${req.name}` }];
  for (const a of req.addresses ?? []) names.push({ type: isIP(a) ? "ip" : "dns", value: a });
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${req.name}, OU=${req.role}, O=damselfly`,
    issuer: caCert.subject,
    publicKey: keys.publicKey,
    signingKey: await importCaKey(ca.key),
    signingAlgorithm: SIGNING,
    ...validity(req.days ?? 365),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { cert: cert.toString("pem"), key: await keyPem(keys.privateKey) };
}

/** Milliseconds until `pem` expires (negative when it has); throws on text that is no certificate. */
export function certificateRemainingMs(pem: string, now = Date.now()): number {
  return new Date(new NodeX509Certificate(pem).validTo).getTime() - now;
}
