// The keys daemons seal pieces at rest with (issue 21): one AES-256-GCM key per tenant and
// version, in the manager's database (table tenant_keys). A tenant's first key is made on
// first demand; rotation adds the next version, which new tasks are sealed under from then
// on, while tasks sealed earlier keep opening with the version they name. No key leaves this
// module except towards TenantKeys.GetTenantKey (grpc/tenant-keys.ts), and none is logged.
//
// The keys are stored as they are: like the JWT signing key in the same database, the manager
// has nothing to wrap them with that an attacker holding the database would not also hold.
// Protect the database (and its backups) like the key material it holds (SECURITY.md).
import { randomBytes } from "node:crypto";
import type { Database, Queryable } from "./db/database.js";
import type { TenantKeyRow, TenantRow } from "./db/rows.js";

export const TENANT_KEY_BYTES = 32;

export interface TenantKeyRecord {
  tenantId: number;
  tenantName: string;
  version: number;
  key: Buffer;
}

/** A version's metadata, without its key (what the REST API shows: schemas.ts TenantKeyVersion). */
export type TenantKeyVersion = Pick<TenantKeyRow, "tenant_id" | "version" | "created_at">;

type KeyRow = Pick<TenantKeyRow, "tenant_id" | "version" | "key"> & Pick<TenantRow, "name">;

const toRecord = (r: KeyRow): TenantKeyRecord => ({ tenantId: r.tenant_id, tenantName: r.name, version: r.version, key: Buffer.from(r.key) });

export class TenantKeys {
  constructor(private readonly db: Database) {}

  /** Whether tenant `id` exists. */
  async tenantExists(id: number): Promise<boolean> {
    return (await this.db.query("SELECT 1 FROM tenants WHERE id = $1", [id])).length > 0;
  }

  /**
   * Whose key seals a task: the tenant of `application` when an application of that name is
   * known, else the tenant of scheduler cluster `clusterId` (0: the default cluster).
   * undefined when neither exists.
   */
  async resolveTenant(application: string, clusterId: number): Promise<number | undefined> {
    if (application) {
      const [app] = await this.db.query<{ tenant_id: number }>("SELECT tenant_id FROM applications WHERE name = $1 ORDER BY id LIMIT 1", [application]);
      if (app) return app.tenant_id;
    }
    const [cluster] =
      clusterId > 0
        ? await this.db.query<{ tenant_id: number }>("SELECT tenant_id FROM scheduler_clusters WHERE id = $1", [clusterId])
        : await this.db.query<{ tenant_id: number }>("SELECT tenant_id FROM scheduler_clusters WHERE is_default ORDER BY id LIMIT 1");
    return cluster?.tenant_id;
  }

  /** The tenant's key at `version`; undefined when that version does not exist. */
  async version(tenantId: number, version: number): Promise<TenantKeyRecord | undefined> {
    const [row] = await this.db.query<KeyRow>("SELECT k.tenant_id, t.name, k.version, k.key FROM tenant_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.tenant_id = $1 AND k.version = $2", [tenantId, version]);
    return row && toRecord(row);
  }

  /** The tenant's newest key, made (version 1) if it has none yet; undefined for an unknown tenant. */
  async current(tenantId: number): Promise<TenantKeyRecord | undefined> {
    const newest = () => this.db.query<KeyRow>("SELECT k.tenant_id, t.name, k.version, k.key FROM tenant_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.tenant_id = $1 ORDER BY k.version DESC LIMIT 1", [tenantId]);
    const [row] = await newest();
    if (row) return toRecord(row);
    if (!(await this.tenantExists(tenantId))) return undefined;
    // Managers sharing the database may race here: the primary key keeps one version 1.
    await this.db.query("INSERT INTO tenant_keys (tenant_id, version, key) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING", [tenantId, randomBytes(TENANT_KEY_BYTES)]);
    const [made] = await newest();
    return made && toRecord(made);
  }

  /** Adds the tenant's next version (new tasks are sealed under it); returns it without the key. */
  async rotate(tenantId: number): Promise<TenantKeyVersion> {
    return this.db.transaction(async (tx: Queryable) => {
      // Serialises rotations of one tenant (two at once would both pick the same next version).
      await tx.query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE", [tenantId]);
      const [row] = await tx.query<TenantKeyVersion>(
        "INSERT INTO tenant_keys (tenant_id, version, key) SELECT $1, COALESCE(MAX(version), 0) + 1, $2 FROM tenant_keys WHERE tenant_id = $1 RETURNING tenant_id, version, created_at",
        [tenantId, randomBytes(TENANT_KEY_BYTES)],
      );
      if (!row) throw new Error(`rotating the key of tenant ${tenantId} inserted nothing`);
      return row;
    });
  }

  /** The tenant's versions, newest first, without keys. */
  versions(tenantId: number): Promise<TenantKeyVersion[]> {
    return this.db.query<TenantKeyVersion>("SELECT tenant_id, version, created_at FROM tenant_keys WHERE tenant_id = $1 ORDER BY version DESC", [tenantId]);
  }
}
