// The certificates of a `damselfly up` stack, under <data dir>/pki: the cluster CA is created on
// the first run and kept (a stack restarted keeps trusting the same root, and an operator can
// hand ca.pem to a tool that talks to the stack); each component's certificate is issued anew
// at every start (ECDSA, milliseconds each), so none ever expires under a long-lived stack
// that gets restarted, and a changed stack layout needs no cleanup. Keys are mode 0600.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../common/errors.js";
import type { TlsFiles } from "../common/grpc/tls.js";
import type { Role } from "../common/tls/identity.js";
import { certificateRemainingMs, createClusterCa, issueLeaf, type CertificatePem } from "../common/tls/pki.js";

export interface StackCertificate {
  /** File name stem and the certificate's name (a daemon's hostname). */
  name: string;
  role: Role;
  /** The addresses clients check the certificate against (default 127.0.0.1 and localhost: everything `up` starts listens there). */
  addresses?: readonly string[];
}

/** A CA with less than this left is replaced (its leaves are issued for a year). */
const CA_RENEW_MS = 400 * 86_400_000;

async function clusterCa(dir: string): Promise<CertificatePem> {
  const certFile = join(dir, "ca.pem");
  const keyFile = join(dir, "ca-key.pem");
  if (existsSync(certFile) && existsSync(keyFile)) {
    let ca: CertificatePem;
    try {
      ca = { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
      if (certificateRemainingMs(ca.cert) > CA_RENEW_MS) return ca;
    } catch (e) {
      throw new Error(`${certFile}: not a usable CA (${errorMessage(e)}); remove ${dir} to have a new one generated`);
    }
  }
  const ca = await createClusterCa("Damselfly up CA");
  writeFileSync(keyFile, ca.key, { mode: 0o600 });
  writeFileSync(certFile, ca.cert);
  return ca;
}

/** Creates or reuses the CA in `dir`, issues one certificate per entry; paths by name. */
export async function stackCertificates(dir: string, certs: readonly StackCertificate[]): Promise<Map<string, TlsFiles>> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await clusterCa(dir);
  const caCert = join(dir, "ca.pem");
  const files = new Map<string, TlsFiles>();
  for (const c of certs) {
    // The address in the certificate lets clients that check the server's address (Dragonfly's,
    // and our piece client) connect too.
    const leaf = await issueLeaf(ca, { role: c.role, name: c.name, addresses: [...(c.addresses ?? ["127.0.0.1", "localhost"])] });
    const cert = join(dir, `${c.name}.pem`);
    const key = join(dir, `${c.name}-key.pem`);
    writeFileSync(key, leaf.key, { mode: 0o600 });
    writeFileSync(cert, leaf.cert);
    files.set(c.name, { caCert, cert, key });
  }
  return files;
}
