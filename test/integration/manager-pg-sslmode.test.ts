// database.postgres.sslMode defaults to prefer with libpq's meaning against the real
// PostgreSQL the tests run (DATABASE_URL; .ci/run starts it without TLS): TLS is asked for,
// the server says it has none, and the manager connects in plaintext, where node-postgres alone
// fails. require still fails there: no mode but prefer (and allow) may fall back.
import pg from "pg";
import { describe, expect, it } from "vitest";
import { resolveManagerConfig } from "../../src/manager/config.js";
import { openDatabase } from "../../src/manager/db/database.js";

function databaseUrl(): URL {
  const raw = process.env.DATABASE_URL;
  if (!raw) throw new Error("DATABASE_URL is unset: this test needs the PostgreSQL server .ci/run starts");
  return new URL(raw);
}

/** The manager config naming the test server by host/port/user/dbname, sslMode left to its default. */
function managerUrl(extra: Record<string, unknown> = {}): string {
  const u = databaseUrl();
  const postgres = { host: u.hostname, port: Number(u.port || 5432), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password), dbname: u.pathname.slice(1), ...extra };
  const url = resolveManagerConfig({ database: { postgres } }, "t", {}).resolved.databaseUrl;
  if (!url) throw new Error("no database URL resolved");
  return url;
}

describe("PostgreSQL sslMode", () => {
  it("defaults to prefer and connects in plaintext to a server without TLS", async () => {
    const url = managerUrl({ timezone: "Asia/Tokyo" });
    expect(new URL(url).searchParams.get("sslmode")).toBe("prefer");
    const db = await openDatabase({ url });
    try {
      const [row] = await db.query<{ ssl: boolean }>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
      expect(row?.ssl).toBe(false);
      // The URL's other parameters survive taking sslmode out of it.
      const [tz] = await db.query<{ TimeZone: string }>("SHOW TimeZone");
      expect(tz?.TimeZone).toBe("Asia/Tokyo");
    } finally {
      await db.close();
    }
  });

  it("is needed: node-postgres alone refuses sslmode=prefer against this server", async () => {
    const client = new pg.Client({ connectionString: managerUrl() });
    await expect(client.connect()).rejects.toThrow(/does not support SSL/);
    await client.end().catch(() => undefined);
  });

  it("never downgrades require", async () => {
    const db = await openDatabase({ url: managerUrl({ sslMode: "require" }) });
    try {
      await expect(db.query("SELECT 1")).rejects.toThrow(/does not support SSL/);
    } finally {
      await db.close();
    }
  });
});
