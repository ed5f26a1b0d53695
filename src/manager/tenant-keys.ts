// The keys daemons seal pieces at rest with (issue 21): one AES-256-GCM key per tenant and
// version, in the manager's database (table tenant_keys). A tenant's first key is made on
// first demand; rotation adds the next version, which new tasks are sealed under from then
// on, while tasks sealed earlier keep opening with the version they name. No key leaves this
// module except towards TenantKeys.GetTenantKey (grpc/tenant-keys.ts), and none is logged.
//
// The keys are stored wrapped under the manager's key-encryption key (key-wrap.ts: config
// encryption.key or DAMSELFLY_MANAGER_ENCRYPTION_KEY), which never enters the database: a copy
// of the database or a backup alone does not give the keys away. Without one the manager
// stores no tenant key and hands none out, and it does not start while keys are stored.
import { randomBytes } from "node:crypto";
import { errorMessage } from "../common/errors.js";
import type { Database, Queryable } from "./db/database.js";
import type { ApplicationRow, TenantKeyRow, TenantRow } from "./db/rows.js";
import { ConfigError } from "../common/config.js";
import { ENCRYPTION_KEY_ENV, unwrapTenantKey, wrapTenantKey } from "./key-wrap.js";

export const TENANT_KEY_BYTES = 32;

export interface TenantKeyRecord {
  tenantId: number;
  tenantName: string;
  version: number;
  key: Buffer;
}

/** A version's metadata, without its key (what the REST API shows: schemas.ts TenantKeyVersion). */
export type TenantKeyVersion = Pick<TenantKeyRow, "tenant_id" | "version" | "created_at">;

type KeyRow = Pick<TenantKeyRow, "tenant_id" | "version" | "key" | "wrapped"> & Pick<TenantRow, "name">;

/** What a manager without a key-encryption key answers where a tenant key would be stored or handed out. */
export const NO_ENCRYPTION_KEY = `this manager has no encryption key (encryption.key in manager.yaml or ${ENCRYPTION_KEY_ENV}): it stores and hands out no tenant key`;

export class TenantKeys {
  /** `kek`: the key-encryption key the keys are stored wrapped under; none: no key is stored or handed out. */
  constructor(
    private readonly db: Database,
    private readonly kek?: Buffer,
  ) {}

  /** Whether this manager can store and hand out tenant keys (it has a key-encryption key). */
  get enabled(): boolean {
    return this.kek !== undefined;
  }

  /**
   * Run once at start, before serving. Without a key-encryption key: refused while any tenant
   * key is stored (daemons would lose their sealed tasks). With one: keys stored before version
   * 4 of the schema, in plain, are wrapped now (in one transaction, so managers starting
   * together wrap each once), and one stored key is opened, so a wrong key-encryption key
   * stops the start instead of every later GetTenantKey. Returns how many keys it wrapped.
   */
  async prepare(): Promise<number> {
    const kek = this.kek;
    if (!kek) {
      const [stored] = await this.db.query<{ n: number }>("SELECT count(*)::int AS n FROM tenant_keys");
      if (stored && stored.n > 0) throw new ConfigError(`${stored.n} tenant key(s) are stored but ${NO_ENCRYPTION_KEY}: set the key they are wrapped under (or that will wrap them)`);
      return 0;
    }
    const wrapped = await this.db.transaction(async (tx: Queryable) => {
      const plain = await tx.query<Pick<TenantKeyRow, "tenant_id" | "version" | "key">>("SELECT tenant_id, version, key FROM tenant_keys WHERE NOT wrapped ORDER BY tenant_id, version FOR UPDATE");
      for (const r of plain) {
        await tx.query("UPDATE tenant_keys SET key = $3, wrapped = true WHERE tenant_id = $1 AND version = $2", [r.tenant_id, r.version, wrapTenantKey(kek, r.tenant_id, r.version, Buffer.from(r.key))]);
      }
      return plain.length;
    });
    const [probe] = await this.db.query<Pick<TenantKeyRow, "tenant_id" | "version" | "key">>("SELECT tenant_id, version, key FROM tenant_keys ORDER BY tenant_id, version LIMIT 1");
    if (probe) {
      try {
        unwrapTenantKey(kek, probe.tenant_id, probe.version, probe.key);
      } catch (e) {
        throw new ConfigError(errorMessage(e));
      }
    }
    return wrapped;
  }

  private toRecord(r: KeyRow): TenantKeyRecord {
    if (!this.kek) throw new Error(NO_ENCRYPTION_KEY);
    // A plain row exists only until prepare() wraps it; one written meanwhile by an older manager is still read.
    const key = r.wrapped ? unwrapTenantKey(this.kek, r.tenant_id, r.version, r.key) : Buffer.from(r.key);
    return { tenantId: r.tenant_id, tenantName: r.name, version: r.version, key };
  }

  private wrapped(tenantId: number, version: number): Buffer {
    if (!this.kek) throw new Error(NO_ENCRYPTION_KEY);
    return wrapTenantKey(this.kek, tenantId, version, randomBytes(TENANT_KEY_BYTES));
  }

  /** Whether tenant `id` exists. */
  async tenantExists(id: number): Promise<boolean> {
    return (await this.db.query("SELECT 1 FROM tenants WHERE id = $1", [id])).length > 0;
  }

  /**
   * The tenant of the application named `application` (a task's tenant where the manager knows
   * its application); undefined when none of that name exists. Who may have that tenant's key
   * is tenant-access.ts's question, not this one's.
   */
  async applicationTenant(application: string): Promise<number | undefined> {
    if (!application) return undefined;
    const [app] = await this.db.query<Pick<ApplicationRow, "tenant_id">>("SELECT tenant_id FROM applications WHERE name = $1 ORDER BY id LIMIT 1", [application]);
    return app?.tenant_id;
  }

  /** Tenant `id`'s name, for messages (undefined: no such tenant). */
  async tenantName(id: number): Promise<string | undefined> {
    const [row] = await this.db.query<Pick<TenantRow, "name">>("SELECT name FROM tenants WHERE id = $1", [id]);
    return row?.name;
  }

  /** The tenant's key at `version`; undefined when that version does not exist. */
  async version(tenantId: number, version: number): Promise<TenantKeyRecord | undefined> {
    const [row] = await this.db.query<KeyRow>("SELECT k.tenant_id, t.name, k.version, k.key, k.wrapped FROM tenant_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.tenant_id = $1 AND k.version = $2", [tenantId, version]);
    return row && this.toRecord(row);
  }

  /** The tenant's newest key, made (version 1) if it has none yet; undefined for an unknown tenant. */
  async current(tenantId: number): Promise<TenantKeyRecord | undefined> {
    const newest = () => this.db.query<KeyRow>("SELECT k.tenant_id, t.name, k.version, k.key, k.wrapped FROM tenant_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.tenant_id = $1 ORDER BY k.version DESC LIMIT 1", [tenantId]);
    const [row] = await newest();
    if (row) return this.toRecord(row);
    if (!(await this.tenantExists(tenantId))) return undefined;
    // Managers sharing the database may race here: the primary key keeps one version 1.
    await this.db.query("INSERT INTO tenant_keys (tenant_id, version, key, wrapped) VALUES ($1, 1, $2, true) ON CONFLICT DO NOTHING", [tenantId, this.wrapped(tenantId, 1)]);
    const [made] = await newest();
    return made && this.toRecord(made);
  }

  /** Adds the tenant's next version (new tasks are sealed under it); returns it without the key. */
  async rotate(tenantId: number): Promise<TenantKeyVersion> {
    return this.db.transaction(async (tx: Queryable) => {
      // Serialises rotations of one tenant (two at once would both pick the same next version).
      await tx.query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE", [tenantId]);
      // The version is wrapped into the key's additional data, so it is chosen before the insert.
      const [last] = await tx.query<{ v: number }>("SELECT COALESCE(MAX(version), 0)::int AS v FROM tenant_keys WHERE tenant_id = $1", [tenantId]);
      const version = (last?.v ?? 0) + 1;
      const [row] = await tx.query<TenantKeyVersion>("INSERT INTO tenant_keys (tenant_id, version, key, wrapped) VALUES ($1, $2, $3, true) RETURNING tenant_id, version, created_at", [
        tenantId,
        version,
        this.wrapped(tenantId, version),
      ]);
      if (!row) throw new Error(`rotating the key of tenant ${tenantId} inserted nothing`);
      return row;
    });
  }

  /** The tenant's versions, newest first, without keys. */
  versions(tenantId: number): Promise<TenantKeyVersion[]> {
    return this.db.query<TenantKeyVersion>("SELECT tenant_id, version, created_at FROM tenant_keys WHERE tenant_id = $1 ORDER BY version DESC", [tenantId]);
  }
}
