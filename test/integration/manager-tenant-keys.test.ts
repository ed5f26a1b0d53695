// Tenant keys (issue 21) wrapped under the manager's key-encryption key, against PGlite and
// (when DATABASE_URL is set) PostgreSQL: what the database holds, keys stored in plain before
// schema version 4 wrapped at start, and a manager without the key (or with another one)
// refused rather than handing out keys or storing them readable.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/common/config.js";
import { silentLogger } from "../../src/common/logger.js";
import { buildManagerApp } from "../../src/manager/app.js";
import { ensureRootUser } from "../../src/manager/auth/bootstrap.js";
import { JwtService, loadSigningKey } from "../../src/manager/auth/tokens.js";
import type { Database } from "../../src/manager/db/database.js";
import type { TenantKeyRow } from "../../src/manager/db/rows.js";
import { NO_ENCRYPTION_KEY, TenantKeys } from "../../src/manager/tenant-keys.js";
import { databaseVariants } from "../../src/manager/testing.js";

const { variants, skipped } = databaseVariants();
if (skipped) {
  console.warn(`manager-tenant-keys: ${skipped}`);
  describe("manager tenant keys on PostgreSQL", () => it.skip(skipped, () => undefined));
}

type Stored = Pick<TenantKeyRow, "tenant_id" | "version" | "key" | "wrapped">;
const stored = (db: Database) => db.query<Stored>("SELECT tenant_id, version, key, wrapped FROM tenant_keys ORDER BY tenant_id, version");
const holds = (rows: Stored[], plain: Buffer) => rows.some((r) => Buffer.from(r.key).includes(plain));

describe.each(variants)("manager tenant keys on $name", (variant) => {
  let cleanup: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await cleanup?.();
    cleanup = undefined;
  });
  const open = async () => {
    const opened = await variant.open();
    cleanup = () => opened.cleanup();
    await opened.db.query("INSERT INTO tenants (name) VALUES ('second')");
    return opened.db;
  };
  const kek = randomBytes(32);

  it("stores every key wrapped: no row holds a key's bytes, and a row opens only as its own tenant and version", async () => {
    const db = await open();
    const keys = new TenantKeys(db, kek);
    expect(keys.enabled).toBe(true);
    const first = await keys.current(1);
    const rotated = await keys.rotate(1);
    const second = await keys.current(2);
    expect([first?.version, rotated.version, second?.version]).toEqual([1, 2, 1]);
    const v2 = await keys.version(1, 2);
    if (!first || !second || !v2) throw new Error("a key is missing");
    expect(new Set([first.key.toString("hex"), v2.key.toString("hex"), second.key.toString("hex")]).size).toBe(3);

    const rows = await stored(db);
    expect(rows.map((r) => [r.tenant_id, r.version, r.wrapped, r.key.length])).toEqual([
      [1, 1, true, 60],
      [1, 2, true, 60],
      [2, 1, true, 60],
    ]);
    for (const k of [first, v2, second]) expect(holds(rows, k.key)).toBe(false);

    // Another manager on the same database with the same key reads the same keys.
    const other = new TenantKeys(db, kek);
    expect((await other.version(1, 1))?.key).toEqual(first.key);
    expect((await other.current(1))?.key).toEqual(v2.key);

    // A wrapped key copied onto another tenant's row does not open there.
    await db.query("UPDATE tenant_keys SET key = (SELECT key FROM tenant_keys WHERE tenant_id = 2 AND version = 1) WHERE tenant_id = 1 AND version = 1");
    await expect(keys.version(1, 1)).rejects.toThrow("tenant 1's key version 1 does not open under the manager's encryption key");
  });

  it("wraps keys stored in plain (before schema version 4) at start, once, and keeps their values", async () => {
    const db = await open();
    const plainA = randomBytes(32);
    const plainB = randomBytes(32);
    await db.query("INSERT INTO tenant_keys (tenant_id, version, key) VALUES (1, 1, $1), (2, 1, $2)", [plainA, plainB]);

    // Without an encryption key the start is refused while keys are stored, naming both settings.
    const refused = new TenantKeys(db).prepare();
    await expect(refused).rejects.toBeInstanceOf(ConfigError);
    await expect(new TenantKeys(db).prepare()).rejects.toThrow(`2 tenant key(s) are stored but ${NO_ENCRYPTION_KEY}`);
    expect(NO_ENCRYPTION_KEY).toContain("encryption.key in manager.yaml or DAMSELFLY_MANAGER_ENCRYPTION_KEY");

    const keys = new TenantKeys(db, kek);
    expect(await keys.prepare()).toBe(2);
    const rows = await stored(db);
    expect(rows.every((r) => r.wrapped && r.key.length === 60)).toBe(true);
    expect(holds(rows, plainA) || holds(rows, plainB)).toBe(false);
    expect((await keys.version(1, 1))?.key).toEqual(plainA);
    expect((await keys.version(2, 1))?.key).toEqual(plainB);
    // Already wrapped: nothing to do at the next start.
    expect(await keys.prepare()).toBe(0);

    // Another key-encryption key stops the start instead of failing every later GetTenantKey.
    const wrong = new TenantKeys(db, randomBytes(32)).prepare();
    await expect(wrong).rejects.toBeInstanceOf(ConfigError);
    await expect(new TenantKeys(db, randomBytes(32)).prepare()).rejects.toThrow(/tenant 1's key version 1 does not open under the manager's encryption key \(encryption\.key \/ DAMSELFLY_MANAGER_ENCRYPTION_KEY\)/);
  });

  it("without an encryption key starts while no key is stored, makes none, and the API refuses rotation with 409", async () => {
    const db = await open();
    const keys = new TenantKeys(db);
    expect(keys.enabled).toBe(false);
    expect(await keys.prepare()).toBe(0);
    await expect(keys.current(1)).rejects.toThrow(NO_ENCRYPTION_KEY);
    expect(await stored(db)).toEqual([]);

    const dataDir = mkdtempSync(join(tmpdir(), "manager-tenant-keys-"));
    const password = "root-pass-1";
    await ensureRootUser(db, dataDir, silentLogger(), { DRAGONFLY_INITIAL_ROOT_PASSWORD: password });
    const jwt = new JwtService(await loadSigningKey(db), { realm: "Dragonfly", timeoutMs: 3_600_000, maxRefreshMs: 7_200_000 });
    const app = await buildManagerApp({ db, jwt, tenantKeys: keys });
    try {
      const signIn = await app.inject({ method: "POST", url: "/api/v1/users/signin", payload: { name: "root", password } });
      expect(signIn.statusCode, signIn.body).toBe(200);
      const headers = { authorization: `Bearer ${signIn.json<{ token: string }>().token}` };
      const rotate = await app.inject({ method: "POST", url: "/api/v1/tenants/1/keys", headers });
      expect(rotate.statusCode).toBe(409);
      expect(rotate.json()).toEqual({ message: NO_ENCRYPTION_KEY });
      expect((await app.inject({ method: "GET", url: "/api/v1/tenants/1/keys", headers })).json()).toEqual([]);
      expect(await stored(db)).toEqual([]);
    } finally {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
