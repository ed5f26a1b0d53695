// The migrations (src/manager/db/migrations/*.sql) against PGlite and (when DATABASE_URL is set)
// PostgreSQL: the tables they create are the ones rows.ts types, column by column (name, type,
// nullability), and the schema_migrations bookkeeping decides what runs — a database at the
// current version is not migrated again, one a version behind gets only the newer versions.
import { afterEach, describe, expect, it } from "vitest";
import type { Database } from "../../src/manager/db/database.js";
import { loadMigrations, migrate } from "../../src/manager/db/migrations.js";
import type { Column, TableName, Tables } from "../../src/manager/db/rows.js";
import { databaseVariants } from "../../src/manager/testing.js";

const { variants, skipped } = databaseVariants();
if (skipped) {
  console.warn(`manager-migrations: ${skipped}`);
  describe("manager migrations on PostgreSQL", () => it.skip(skipped, () => undefined));
}

// What a row type says of each column, in PostgreSQL's words; "?" marks a nullable column.
type BaseKind<T> = T extends Date ? "timestamptz" : T extends Uint8Array ? "bytea" : T extends number ? "integer" : T extends boolean ? "boolean" : T extends string ? "text" : "jsonb";
type Kind<T> = null extends T ? `${BaseKind<NonNullable<T>>}?` : BaseKind<T>;
type Shape<K extends TableName> = { [C in Column<K>]: Kind<Tables[K][C]> };

// Checked against rows.ts by the compiler (every column, each kind), and against the database below.
const TS = "timestamptz";
const ROWS: { [K in TableName]: Shape<K> } = {
  tenants: { id: "integer", name: "text", bio: "text", created_at: TS, updated_at: TS },
  users: { id: "integer", tenant_id: "integer", name: "text", email: "text", password_hash: "text", avatar: "text", phone: "text", state: "text", location: "text", bio: "text", token_version: "integer", created_at: TS, updated_at: TS },
  roles: { name: "text", builtin: "boolean", created_at: TS },
  role_permissions: { role: "text", object: "text", action: "text" },
  user_roles: { user_id: "integer", role: "text" },
  revoked_tokens: { jti: "text", expires_at: TS },
  settings: { name: "text", value: "text", created_at: TS },
  personal_access_tokens: { id: "integer", tenant_id: "integer", user_id: "integer", name: "text", bio: "text", token_hash: "text", scopes: "jsonb", state: "text", expired_at: TS, last_used_at: "timestamptz?", created_at: TS, updated_at: TS },
  scheduler_clusters: { id: "integer", tenant_id: "integer", name: "text", bio: "text", config: "jsonb", client_config: "jsonb", seed_client_config: "jsonb", scopes: "jsonb", is_default: "boolean", created_at: TS, updated_at: TS },
  seed_peer_clusters: { id: "integer", tenant_id: "integer", name: "text", bio: "text", config: "jsonb", created_at: TS, updated_at: TS },
  seed_peer_cluster_scheduler_clusters: { seed_peer_cluster_id: "integer", scheduler_cluster_id: "integer" },
  schedulers: { id: "integer", scheduler_cluster_id: "integer", host_name: "text", idc: "text", location: "text", ip: "text", port: "integer", state: "text", features: "jsonb", config: "jsonb", last_keep_alive_at: "timestamptz?", created_at: TS, updated_at: TS },
  seed_peers: { id: "integer", seed_peer_cluster_id: "integer", host_name: "text", type: "text", idc: "text", location: "text", ip: "text", port: "integer", download_port: "integer", object_storage_port: "integer", state: "text", last_keep_alive_at: "timestamptz?", created_at: TS, updated_at: TS },
  peers: {
    id: "integer", scheduler_cluster_id: "integer", host_name: "text", type: "text", idc: "text", location: "text", ip: "text", port: "integer", download_port: "integer", proxy_port: "integer", object_storage_port: "integer", state: "text",
    os: "text", platform: "text", platform_family: "text", platform_version: "text", kernel_version: "text", git_version: "text", git_commit: "text", build_platform: "text", created_at: TS, updated_at: TS,
  },
  applications: { id: "integer", tenant_id: "integer", user_id: "integer?", name: "text", url: "text", bio: "text", priority: "jsonb", created_at: TS, updated_at: TS },
  configs: { id: "integer", user_id: "integer?", name: "text", value: "text", bio: "text", created_at: TS, updated_at: TS },
  jobs: { id: "integer", tenant_id: "integer", user_id: "integer?", task_id: "text", bio: "text", type: "text", state: "text", args: "jsonb", result: "jsonb", attempts: "integer", lease_owner: "text?", lease_until: "timestamptz?", retry_of: "integer?", created_at: TS, updated_at: TS },
  job_scheduler_clusters: { job_id: "integer", scheduler_cluster_id: "integer" },
  audits: { id: "integer", tenant_id: "integer?", actor_type: "text", actor_name: "text", event_type: "text", operation: "text", operated_at: TS, state: "text", path: "text", status_code: "integer", created_at: TS, updated_at: TS },
  webhooks: { id: "integer", tenant_id: "integer", user_id: "integer?", name: "text", bio: "text", url: "text", event_types: "jsonb", secret: "text", auth_header: "text", skip_cert_verify: "boolean", active: "boolean", created_at: TS, updated_at: TS },
  webhook_deliveries: {
    id: "integer", webhook_id: "integer", delivery_id: "text", event: "text", body: "text", state: "text", attempts: "integer", status_code: "integer?", error: "text",
    next_attempt_at: "timestamptz?", lease_owner: "text?", lease_until: "timestamptz?", delivered_at: "timestamptz?", created_at: TS, updated_at: TS,
  },
  tenant_keys: { tenant_id: "integer", version: "integer", key: "bytea", created_at: TS, wrapped: "boolean" },
  host_commands: { id: "integer", tenant_id: "integer", user_id: "integer?", type: "text", args: "jsonb", host_id: "text?", scheduler_cluster_id: "integer?", timeout_ms: "integer", state: "text", error: "text", created_at: TS, updated_at: TS },
  host_command_results: { command_id: "integer", host_id: "text", hostname: "text", state: "text", error: "text", result: "jsonb", finished_at: "timestamptz?", created_at: TS, updated_at: TS },
  schema_migrations: { version: "integer", name: "text", applied_at: TS },
};

const PG_KIND: Record<string, string> = {
  integer: "integer",
  "character varying": "text",
  character: "text",
  text: "text",
  boolean: "boolean",
  "timestamp with time zone": "timestamptz",
  jsonb: "jsonb",
  bytea: "bytea",
};

/** The tables of the current schema as ROWS writes them. */
async function schemaShape(db: Database): Promise<Record<string, Record<string, string>>> {
  const columns = await db.query<{ table_name: string; column_name: string; data_type: string; is_nullable: "YES" | "NO" }>(
    "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
  );
  const out: Record<string, Record<string, string>> = {};
  for (const c of columns) {
    const kind = `${PG_KIND[c.data_type] ?? c.data_type}${c.is_nullable === "YES" ? "?" : ""}`;
    out[c.table_name] = { ...out[c.table_name], [c.column_name]: kind };
  }
  return out;
}

describe.each(variants)("manager migrations on $name", (variant) => {
  let cleanup: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await cleanup?.();
    cleanup = undefined;
  });
  const open = async () => {
    const opened = await variant.open({ migrated: false });
    cleanup = () => opened.cleanup();
    return opened.db;
  };

  it("creates exactly the tables and columns rows.ts types", async () => {
    const db = await open();
    expect(await migrate(db)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await schemaShape(db)).toEqual(ROWS);
  });

  it("records each version once and runs only the versions a database lacks", async () => {
    const db = await open();
    const all = loadMigrations();
    // A database behind: only the versions after its own run on it.
    expect(await migrate(db, all.slice(0, 1))).toEqual([1]);
    expect(await migrate(db)).toEqual([2, 3, 4, 5, 6]);
    // At the current version nothing runs again (a second run of version 1 would fail on CREATE TABLE).
    expect(await migrate(db)).toEqual([]);
    const recorded = await db.query<{ version: number; name: string }>("SELECT version, name FROM schema_migrations ORDER BY version");
    expect(recorded).toEqual([
      { version: 1, name: "control plane" },
      { version: 2, name: "webhooks" },
      { version: 3, name: "tenant keys" },
      { version: 4, name: "tenant key wrapping" },
      { version: 5, name: "job retry" },
      { version: 6, name: "host commands" },
    ]);
    // Version 1's seed rows are there once.
    const [clusters] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM scheduler_clusters WHERE name = 'cluster-1'");
    expect(clusters?.n).toBe(1);
  });
});
