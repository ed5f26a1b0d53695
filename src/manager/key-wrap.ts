// The manager's key-encryption key (config encryption.key, or DAMSELFLY_MANAGER_ENCRYPTION_KEY):
// tenant keys (tenant-keys.ts) are stored wrapped under it with AES-256-GCM, so the database
// and its backups alone do not give away what the daemons seal pieces with (issue 21). The
// key-encryption key lives only in the manager's config or environment, never in the database.
//
// A wrapped key is nonce (12 bytes) ‖ ciphertext (32) ‖ tag (16). The tenant and version are
// the additional data: a wrapped key copied onto another tenant's or version's row does not
// open there.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { ConfigError } from "../common/config.js";

export const ENCRYPTION_KEY_ENV = "DAMSELFLY_MANAGER_ENCRYPTION_KEY";
export const KEK_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** Length of a wrapped 32-byte tenant key. */
export const WRAPPED_KEY_BYTES = NONCE_BYTES + 32 + TAG_BYTES;

/** The key-encryption key from its base64 form (32 bytes, e.g. `openssl rand -base64 32`); `where` names its source in the error. */
export function parseEncryptionKey(base64: string, where: string): Buffer {
  const text = base64.trim();
  const key = Buffer.from(text, "base64");
  // Buffer.from skips what is not base64: re-encoding tells a mistyped key from a real one.
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || key.toString("base64") !== text || key.length !== KEK_BYTES) {
    throw new ConfigError(`${where}: must be ${KEK_BYTES} bytes in base64 (44 characters, e.g. from \`openssl rand -base64 32\`), got ${text.length} characters`);
  }
  return key;
}

const additionalData = (tenantId: number, version: number) => Buffer.from(`damselfly tenant key ${tenantId}/${version}`);

/** Wraps tenant `tenantId`'s key `version` under the key-encryption key. */
export function wrapTenantKey(kek: Buffer, tenantId: number, version: number, key: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", kek, nonce);
  cipher.setAAD(additionalData(tenantId, version));
  const sealed = Buffer.concat([cipher.update(key), cipher.final()]);
  return Buffer.concat([nonce, sealed, cipher.getAuthTag()]);
}

/**
 * The tenant key a row holds wrapped; throws when it does not open under this key-encryption
 * key (another one, or the row's bytes or tenant/version were changed).
 */
export function unwrapTenantKey(kek: Buffer, tenantId: number, version: number, wrapped: Uint8Array): Buffer {
  const blob = Buffer.from(wrapped);
  if (blob.length !== WRAPPED_KEY_BYTES) throw new Error(`tenant ${tenantId}'s key version ${version} is ${blob.length} bytes, not a wrapped key (${WRAPPED_KEY_BYTES})`);
  const decipher = createDecipheriv("aes-256-gcm", kek, blob.subarray(0, NONCE_BYTES));
  decipher.setAAD(additionalData(tenantId, version));
  decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(blob.subarray(NONCE_BYTES, blob.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new Error(`tenant ${tenantId}'s key version ${version} does not open under the manager's encryption key (encryption.key / ${ENCRYPTION_KEY_ENV}): another key than the one it was stored with, or the row was altered`);
  }
}
