// Credentials the manager issues: JWTs for console/API sessions (HS256, key generated at first
// start and kept in the database) and personal access tokens for the open API (random 256-bit
// secrets; only their SHA-256 is stored).
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { SignJWT, jwtVerify, errors as joseErrors } from "jose";
import type { Queryable } from "../db/database.js";

export interface SessionClaims {
  /** User id (gin-jwt's identity key in Dragonfly). */
  id: number;
  /** Bumped on password change: older tokens stop working. */
  ver: number;
  /** Issue time of the first token in a refresh chain (seconds), bounds refreshing. */
  orig_iat: number;
  jti: string;
  exp: number;
}

export interface JwtOptions {
  realm: string;
  /** Token lifetime in ms. */
  timeoutMs: number;
  /** How long after the first sign-in a token may still be refreshed, in ms. */
  maxRefreshMs: number;
}

const SIGNING_KEY_SETTING = "jwt_signing_key";

/** Returns the configured key, or the one stored in the database (created on first use). */
export async function loadSigningKey(db: Queryable, configured?: string): Promise<Uint8Array> {
  if (configured) {
    if (Buffer.byteLength(configured) < 32) throw new Error("auth.jwt.key must be at least 32 bytes");
    return new TextEncoder().encode(configured);
  }
  // Two managers starting together on one database agree on a single key.
  await db.query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", [SIGNING_KEY_SETTING, randomBytes(32).toString("base64")]);
  const rows = await db.query<{ value: string }>("SELECT value FROM settings WHERE name = $1", [SIGNING_KEY_SETTING]);
  const value = rows[0]?.value;
  if (!value) throw new Error("JWT signing key missing from settings");
  return new Uint8Array(Buffer.from(value, "base64"));
}

export class JwtService {
  constructor(
    private readonly key: Uint8Array,
    readonly options: JwtOptions,
  ) {}

  async issue(userId: number, version: number, origIat?: number): Promise<{ token: string; expire: Date }> {
    const now = Math.floor(Date.now() / 1000);
    const expire = new Date((now + Math.ceil(this.options.timeoutMs / 1000)) * 1000);
    const token = await new SignJWT({ id: userId, ver: version, orig_iat: origIat ?? now })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuer(this.options.realm)
      .setIssuedAt(now)
      .setExpirationTime(Math.floor(expire.getTime() / 1000))
      .setJti(randomUUID())
      .sign(this.key);
    return { token, expire };
  }

  /**
   * Verifies signature, issuer and expiry. With `allowExpired`, an expired token is accepted as
   * long as its chain is still inside the refresh window (used by refresh_token only).
   */
  async verify(token: string, allowExpired = false): Promise<SessionClaims | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: ["HS256"],
        issuer: this.options.realm,
        ...(allowExpired ? { clockTolerance: Math.ceil(this.options.maxRefreshMs / 1000) } : {}),
      });
      const { id, ver, orig_iat: origIat, jti, exp } = payload as Record<string, unknown>;
      if (typeof id !== "number" || typeof ver !== "number" || typeof origIat !== "number" || typeof jti !== "string" || typeof exp !== "number") return undefined;
      if (allowExpired && origIat * 1000 + this.options.maxRefreshMs < Date.now()) return undefined;
      return { id, ver, orig_iat: origIat, jti, exp };
    } catch (e) {
      if (e instanceof joseErrors.JOSEError) return undefined;
      throw e;
    }
  }
}

/** A new personal access token and the hash to store. The token itself is shown once. */
export function generateAccessToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString("base64url");
  return { token, hash: hashAccessToken(token) };
}

export function hashAccessToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** Constant-time comparison of a presented token with a stored hash. */
export function accessTokenMatches(token: string, storedHash: string): boolean {
  const a = Buffer.from(hashAccessToken(token), "hex");
  const b = Buffer.from(storedHash, "hex");
  return a.length === b.length && timingSafeEqual(a, b);
}
