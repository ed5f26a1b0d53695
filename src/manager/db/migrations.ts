// Versioned schema migrations, applied in order at start inside one transaction per version.
// Each is a file of migrations/: NNNN_name.sql, version NNNN, recorded in schema_migrations
// with its name (underscores read as spaces). The same SQL runs on PGlite and on PostgreSQL
// servers. A migration is never edited once released: changes go in a new version, and the
// tables' row types (rows.ts) change with it.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { errorMessage } from "../../common/errors.js";
import type { Database } from "./database.js";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Next to this module: src/manager/db/migrations under tsx, dist/manager/db/migrations once
 * built (`npm run build:ts` copies the .sql files there: scripts/copy-sql.mjs).
 */
export const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations/", import.meta.url));

const FILE_NAME = /^(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)\.sql$/;

/** The migrations in `dir`, by version; a file that breaks the naming rule or repeats a version is an error. */
export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".sql"));
  } catch (e) {
    throw new Error(`database migrations: cannot read ${dir}: ${errorMessage(e)} (a build must copy src/manager/db/migrations/*.sql next to migrations.js)`);
  }
  const byVersion = new Map<number, Migration>();
  for (const file of files) {
    const m = FILE_NAME.exec(file);
    if (!m?.[1] || !m[2]) throw new Error(`database migration ${join(dir, file)}: the name must be NNNN_words.sql (4 digits, lower-case words joined by "_")`);
    const version = Number(m[1]);
    const earlier = byVersion.get(version);
    if (earlier) throw new Error(`database migrations: ${file} and version ${version} "${earlier.name}" in ${dir} have the same version`);
    byVersion.set(version, { version, name: m[2].replaceAll("_", " "), sql: readFileSync(join(dir, file), "utf8") });
  }
  if (byVersion.size === 0) throw new Error(`database migrations: no NNNN_name.sql file in ${dir}`);
  return [...byVersion.values()].sort((a, b) => a.version - b.version);
}

/** An arbitrary constant: the advisory lock that serialises concurrent managers migrating one database. */
const MIGRATION_LOCK = 0x64663767;

/** Applies every migration newer than the database's version; returns the versions applied. */
export async function migrate(db: Database, migrations: readonly Migration[] = loadMigrations()): Promise<number[]> {
  await db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name varchar(256) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const applied: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    const done = await db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
      const rows = await tx.query("SELECT 1 FROM schema_migrations WHERE version = $1", [m.version]);
      if (rows.length > 0) return false;
      // Statements run one by one: the pg extended protocol takes a single statement per query.
      for (const statement of splitStatements(m.sql)) await tx.query(statement);
      await tx.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
      return true;
    });
    if (done) applied.push(m.version);
  }
  return applied;
}

/**
 * Splits migration SQL on semicolons that end a line (our migrations never put one inside a
 * literal). Lines that are only a `--` comment are dropped first, so a comment may say anything.
 */
export function splitStatements(sql: string): string[] {
  return sql
    .split("\n")
    .filter((line) => !/^\s*--/.test(line))
    .join("\n")
    .split(/;\s*\n/)
    .map((s) => s.replace(/;\s*$/, "").trim())
    .filter((s) => s.length > 0);
}
