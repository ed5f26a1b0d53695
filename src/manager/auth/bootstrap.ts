// The root account on first start. There is no default password: it comes from
// DRAGONFLY_INITIAL_ROOT_PASSWORD, or is generated and written to a 0600 file in the data
// directory. Only the file's path is logged, never the password.
import { mkdirSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../common/logger.js";
import type { Database } from "../db/database.js";
import { generatePassword, hashPassword } from "./passwords.js";

export const ROOT_USER = "root";
export const INITIAL_PASSWORD_ENV = "DRAGONFLY_INITIAL_ROOT_PASSWORD";
export const INITIAL_PASSWORD_FILE = "initial-root-password";

export interface RootBootstrap {
  created: boolean;
  /** Set when a password was generated. */
  passwordFile?: string;
}

export async function ensureRootUser(db: Database, dataDir: string, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<RootBootstrap> {
  const existing = await db.query("SELECT 1 FROM users WHERE name = $1", [ROOT_USER]);
  if (existing.length > 0) return { created: false };
  const fromEnv = env[INITIAL_PASSWORD_ENV];
  if (fromEnv !== undefined && (fromEnv.length < 8 || fromEnv.length > 20)) {
    throw new Error(`${INITIAL_PASSWORD_ENV} must be 8 to 20 characters long`);
  }
  const password = fromEnv ?? generatePassword();
  const hash = await hashPassword(password);
  const created = await db.transaction(async (tx) => {
    const rows = await tx.query<{ id: number }>("INSERT INTO users (tenant_id, name, email, password_hash, bio) VALUES (1, $1, '', $2, 'initial administrator') ON CONFLICT (name) DO NOTHING RETURNING id", [ROOT_USER, hash]);
    const row = rows[0];
    if (!row) return false;
    await tx.query("INSERT INTO user_roles (user_id, role) VALUES ($1, 'root')", [row.id]);
    return true;
  });
  // Another manager sharing the database won the race: its password stands.
  if (!created) return { created: false };
  if (fromEnv !== undefined) {
    logger.info({ user: ROOT_USER }, `root user created with the password from ${INITIAL_PASSWORD_ENV}`);
    return { created: true };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, INITIAL_PASSWORD_FILE);
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  logger.warn({ user: ROOT_USER, file }, "root user created with a generated password; read it from the file, sign in and change it");
  return { created: true, passwordFile: file };
}
