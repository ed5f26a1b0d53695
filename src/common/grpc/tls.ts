// gRPC credentials from a TLS config section, one way for every component. Dragonfly's keys:
// a `tls: {caCert, cert, key}` section in the manager (server.grpc.tls) and the scheduler
// (server.tls, manager.tls, seedPeer.tls), and flat caCert/cert/key beside an address in the
// client's dfdaemon.yaml (manager, scheduler, upload.server, upload.client). All three are PEM
// file paths. Without them a connection is plaintext, so a cluster keeps talking to plaintext
// Dragonfly components; with them it is mutual TLS: a server requires a client certificate
// that chains to caCert, and a client presents its own.
import { readFileSync } from "node:fs";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { credentials, ServerCredentials, type ChannelCredentials } from "@grpc/grpc-js";
import { Type } from "@sinclair/typebox";
import { ConfigError } from "../config.js";
import { errorMessage } from "../errors.js";
import { identityOf, type Role } from "../tls/identity.js";

/** PEM file paths, as in the config. */
export interface TlsFiles {
  caCert: string;
  cert: string;
  key: string;
}

/** Dragonfly's `tls` section (manager server.grpc.tls; scheduler server.tls, manager.tls, seedPeer.tls). */
export const TlsSectionSchema = Type.Optional(
  Type.Object(
    {
      caCert: Type.String({ minLength: 1, description: "PEM file of the CA that client and server certificates chain to" }),
      cert: Type.String({ minLength: 1, description: "PEM file of this component's certificate" }),
      key: Type.String({ minLength: 1, description: "PEM file of this component's private key" }),
    },
    { additionalProperties: false },
  ),
);

/** The client's flat keys (dfdaemon.yaml manager/scheduler/upload.server/upload.client); empty = plaintext. */
export const tlsFields = () => ({
  caCert: Type.String({ default: "" }),
  cert: Type.String({ default: "" }),
  key: Type.String({ default: "" }),
});

/** All three paths or none; `key` names the section in the error. */
export function tlsFilesOf(section: Partial<TlsFiles> | undefined, key: string): TlsFiles | undefined {
  const given = (["caCert", "cert", "key"] as const).filter((k) => section?.[k]);
  if (given.length === 0) return undefined;
  if (given.length < 3) {
    const missing = (["caCert", "cert", "key"] as const).filter((k) => !section?.[k]);
    throw new ConfigError(`${key}: TLS needs caCert, cert and key together; ${missing.map((m) => `${key}.${m}`).join(", ")} missing`);
  }
  return { caCert: section?.caCert ?? "", cert: section?.cert ?? "", key: section?.key ?? "" };
}

/** The PEM contents, read once when a component starts. */
export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** A PEM file of the config key `key`, read at start; an unreadable one is a ConfigError naming the key. */
export function readPemFile(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(`${key}: cannot read ${path}: ${errorMessage(e)}`);
  }
}

export function loadTls(files: TlsFiles | undefined, key: string): TlsMaterial | undefined {
  if (!files) return undefined;
  const read = (k: keyof TlsFiles) => readPemFile(files[k], `${key}.${k}`);
  return { ca: read("caCert"), cert: read("cert"), key: read("key") };
}

/** Plaintext without material; otherwise TLS that requires a client certificate chaining to the CA. */
export function serverCredentials(tls: TlsMaterial | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
}

/**
 * Plaintext without material; otherwise TLS presenting our certificate and trusting only the CA.
 * A server certificate of our PKI must carry one of `serverRoles`, and then its address is not
 * checked: peers and schedulers are dialled at the IPs they announce, which change, while the
 * role is what a client relies on (a peer's certificate must not pass for a scheduler's).
 * A certificate without our role (an operator's own PKI) is checked by address as usual.
 */
export function channelCredentials(tls: TlsMaterial | undefined, serverRoles: readonly Role[]): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  return credentials.createSsl(tls.ca, tls.key, tls.cert, {
    checkServerIdentity: (hostname: string, cert: PeerCertificate) => {
      const id = identityOf(cert);
      if (!id) return checkServerIdentity(hostname, cert);
      if (serverRoles.includes(id.role)) return undefined;
      return new Error(`${hostname} presented a ${id.role} certificate (${id.name}); expected ${serverRoles.join(" or ")}`);
    },
  });
}
