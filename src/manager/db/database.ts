// One query layer over two drivers: PGlite (PostgreSQL compiled to WebAssembly, embedded in the
// data directory — the zero-setup default) and `pg` against a real PostgreSQL server. Both speak
// the same SQL, so every query and migration is written once. Values that differ between the
// drivers by default (int8 as string in `pg`) are normalised here so callers see one shape.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, extname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { pgConnectOptions } from "./ssl-mode.js";

export interface Queryable {
  /**
   * Runs one parameterised statement ($1, $2, …) and returns its rows, typed `T` (the table's
   * row type of rows.ts, or the columns selected). Without `T` the rows cannot be read, only
   * counted: a caller that reads them says what they are.
   */
  query<T = never>(sql: string, params?: readonly unknown[]): Promise<T[]>;
}

export interface Database extends Queryable {
  readonly kind: "pglite" | "pg";
  /** Runs several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /** Runs `fn` in one transaction; rolls back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** postgres://… — use a PostgreSQL server through `pg`. */
  url?: string | undefined;
  /** PGlite data directory; omitted (and no url) means an in-memory database (tests). */
  dataDir?: string | undefined;
  /**
   * A schema to create and use as search_path (`pg` only). Lets test runs share one server
   * database without seeing each other's tables.
   */
  schema?: string | undefined;
  /** Pool size for `pg`. */
  maxConnections?: number | undefined;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url) return openPg(options.url, options.schema, options.maxConnections ?? 10);
  if (options.schema) throw new Error("database schema isolation is only supported with a PostgreSQL url");
  return openPglite(options.dataDir);
}

/**
 * PGlite's PostgreSQL keeps the stock 128MB shared_buffers inside its WASM memory; the
 * manager's tables are a few MB. Measured on reopening a data dir (Node 20, PGlite 0.5):
 * RSS 309 MB → 180 MB with 16MB; 8MB saved nothing more (the module's WASM memory starts
 * at 128 MiB whatever the settings).
 */
const PGLITE_CONF = ["shared_buffers=16MB", "wal_buffers=1MB", "work_mem=2MB", "maintenance_work_mem=16MB"];

const here = fileURLToPath(import.meta.url);
const initdbScript = join(dirname(here), `pglite-initdb${extname(here)}`);

/** Runs pglite-initdb.ts in a child process (through tsx when running from the sources). */
function initdbInChild(dataDir: string): Promise<void> {
  // From the sources (tests, `up` from a checkout) through tsx, named by path so that any cwd works.
  const loader = extname(here) === ".ts" ? ["--import", pathToFileURL(join(dirname(here), "..", "..", "..", "node_modules", "tsx", "dist", "loader.mjs")).href] : [];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...loader, initdbScript, dataDir, JSON.stringify(PGLITE_CONF)], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
    child.once("error", reject);
    child.once("exit", (code, signal) => (code === 0 ? resolve() : reject(new Error(`creating the PGlite database in ${dataDir} failed (${signal ?? `exit ${code}`}): ${err.trim()}`))));
  });
}

async function openPglite(dataDir: string | undefined): Promise<Database> {
  const options = { postgresqlconf: PGLITE_CONF };
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (!existsSync(join(dataDir, "PG_VERSION"))) await initdbInChild(dataDir);
  }
  const db = dataDir ? await PGlite.create(dataDir, options) : await PGlite.create(options);
  const wrap = (q: Pick<PGlite, "query">): Queryable => ({
    query: async <T>(sql: string, params: readonly unknown[] = []) => (await q.query<T>(sql, params as unknown[])).rows,
  });
  const base = wrap(db);
  return {
    kind: "pglite",
    query: (sql, params) => base.query(sql, params),
    async exec(sql) {
      await db.exec(sql);
    },
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    close: () => db.close(),
  };
}

async function openPg(url: string, schema: string | undefined, max: number): Promise<Database> {
  if (schema !== undefined && !SCHEMA_NAME.test(schema)) throw new Error(`invalid database schema name "${schema}"`);
  // int8 (OID 20) comes back as a JS number like PGlite's; our ids and counts stay far below 2^53.
  const getTypeParser = (oid: number, format?: "text" | "binary"): unknown => (oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format));
  const types = { getTypeParser: getTypeParser as typeof pg.types.getTypeParser };
  const connect = await pgConnectOptions(url);
  if (schema) {
    const admin = new pg.Client(connect);
    await admin.connect();
    try {
      await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    } finally {
      await admin.end();
    }
  }
  const pool = new pg.Pool({
    ...connect,
    max,
    types,
    ...(schema ? { options: `-c search_path=${schema}` } : {}),
  });
  // An idle client losing its server connection must not crash the process.
  pool.on("error", () => undefined);
  // `pg` returns untyped rows; T is the caller's statement of what its SQL selects (rows.ts).
  const query = async <T>(sql: string, params: readonly unknown[] = []) => (await pool.query(sql, params as unknown[])).rows as T[];
  return {
    kind: "pg",
    query,
    async exec(sql) {
      await pool.query(sql);
    },
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const result = await fn({ query: async <T>(sql: string, params: readonly unknown[] = []) => (await client.query(sql, params as unknown[])).rows as T[] });
        await client.query("COMMIT");
        return result;
      } catch (e) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw e;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}

/** Drops a test schema created by `openDatabase({schema})`. */
export async function dropSchema(url: string, schema: string): Promise<void> {
  if (!SCHEMA_NAME.test(schema)) throw new Error(`invalid database schema name "${schema}"`);
  const admin = new pg.Client(await pgConnectOptions(url));
  await admin.connect();
  try {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await admin.end();
  }
}
