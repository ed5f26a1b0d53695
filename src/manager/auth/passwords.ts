// Password hashing with scrypt (memory-hard, in node:crypto). The stored string carries its own
// parameters so they can be raised later without breaking existing hashes: a hash made with
// older parameters still verifies with the ones it names.
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";

/**
 * 2^17 (OWASP's minimum for scrypt with r=8, p=1): 128 MiB and roughly a third of a second of
 * one core per hash or sign-in here, against 2^14 (16 MiB) before.
 */
const N = 2 ** 17;
const R = 8;
const P = 1;
const KEY_LENGTH = 64;
/** Stored parameters beyond these are refused rather than allowed to exhaust memory. */
const MAX_N = 2 ** 20;
const MAX_R = 32;
const MAX_P = 16;

/** What scrypt needs: its V array (128·r·(N+2)) and B (128·r·p), plus headroom. */
function maxmem(o: { N: number; r: number; p: number }): number {
  return 128 * o.r * (o.N + 2) + 128 * o.r * o.p + (1 << 20);
}

function derive(password: string, salt: Buffer, opts: Required<Pick<ScryptOptions, "N" | "r" | "p">>, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, length, { ...opts, maxmem: maxmem(opts) }, (err, key) => (err ? reject(err) : resolve(key))));
}

function format(n: number, r: number, p: number, salt: Buffer, key: Buffer): string {
  return `scrypt$${n}$${r}$${p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, { N, r: R, p: P }, KEY_LENGTH);
  return format(N, R, P, salt, key);
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  const salt = Buffer.from(parts[4] ?? "", "base64");
  const expected = Buffer.from(parts[5] ?? "", "base64");
  if (!Number.isInteger(n) || !Number.isInteger(r) || !Number.isInteger(p) || expected.length === 0) return false;
  // N must be a power of two above 1 (scrypt refuses others anyway).
  if (n < 2 || n > MAX_N || (n & (n - 1)) !== 0 || r < 1 || r > MAX_R || p < 1 || p > MAX_P) return false;
  const key = await derive(password, salt, { N: n, r, p }, expected.length);
  return timingSafeEqual(key, expected);
}

/**
 * A hash of a random string nobody knows, with today's parameters: sign-in verifies against it
 * when the user is unknown, so the time taken does not reveal which names exist.
 */
export const TIMING_DUMMY_HASH = format(N, R, P, Buffer.alloc(16), Buffer.alloc(KEY_LENGTH, 7));

/** A random password that satisfies Dragonfly's sign-in rule (8–20 characters). */
export function generatePassword(): string {
  return randomBytes(15).toString("base64url");
}
