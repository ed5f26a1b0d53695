// Who a verified certificate says its holder is. Our PKI (pki.ts) writes the role and name in a
// SAN URI `damselfly://<role>/<name>` and in the subject (OU, CN); either is read here, the URI
// first. hostNamesOf lists every host name a certificate carries, for the scheduler to check an
// announced host against (issue 21). Only certificates that chained to the cluster CA reach this
// code (the TLS handshake verified them), so the role and names they carry are the CA's word.
import type { PeerCertificate } from "node:tls";

export const ROLES = ["manager", "scheduler", "seed-peer", "peer"] as const;
export type Role = (typeof ROLES)[number];

export interface Identity {
  role: Role;
  name: string;
}

const isRole = (s: string | undefined): s is Role => s !== undefined && (ROLES as readonly string[]).includes(s);

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The role and name in a certificate, or undefined when it names no role of ours. */
export function identityOf(cert: Pick<PeerCertificate, "subject" | "subjectaltname"> | undefined): Identity | undefined {
  if (!cert) return undefined;
  // "URI:damselfly://seed-peer/host-1, IP Address:127.0.0.1"
  for (const entry of (cert.subjectaltname ?? "").split(/,\s*/)) {
    const m = /^URI:damselfly:\/\/([a-z-]+)\/(.+)$/.exec(entry);
    if (m && isRole(m[1])) return { role: m[1], name: m[2] ?? "" };
  }
  const subject = cert.subject as Record<string, string | string[] | undefined> | undefined;
  const ou = first(subject?.OU);
  return isRole(ou) ? { role: ou, name: first(subject?.CN) ?? "" } : undefined;
}

/**
 * The host names a certificate vouches for: its name as identityOf reads it (what the manager
 * keys a caller's records on), its subject CN and its SAN DNS names (an operator's own PKI may
 * name a host by its FQDN there). A host announcing itself must bear one of them, so what a
 * scheduler lists under a name, and the manager then records under it, came from a holder of a
 * certificate of that name. Empty for no certificate.
 */
export function hostNamesOf(cert: Pick<PeerCertificate, "subject" | "subjectaltname"> | undefined): Set<string> {
  const names = new Set<string>();
  if (!cert) return names;
  const id = identityOf(cert);
  if (id?.name) names.add(id.name);
  const cn = first((cert.subject as Record<string, string | string[] | undefined> | undefined)?.CN);
  if (cn) names.add(cn);
  for (const entry of (cert.subjectaltname ?? "").split(/,\s*/)) {
    const m = /^DNS:(.+)$/.exec(entry);
    if (m?.[1]) names.add(m[1]);
  }
  return names;
}
