// Which tasks are sealed at rest (storage.encryption) and with which key: a new task of a
// listed application, or of a listed tenant, is sealed under its tenant's current key; a
// stored task opens with the tenant and key version its record names (a rotation leaves older
// tasks as they are). Without a policy nothing is sealed and the manager is never asked.
import type { TenantKey, TenantKeySource } from "./tenant-keys.js";

/** How a stored task is sealed (its record, task.json); never the key itself. */
export interface SealedWith {
  tenantId: number;
  tenant: string;
  keyVersion: number;
}

export interface AtRestPolicy {
  /** Tenant names whose tasks are sealed. */
  tenants: readonly string[];
  /** Application names whose tasks are sealed. */
  applications: readonly string[];
}

export const sealedWith = (k: TenantKey): SealedWith => ({ tenantId: k.tenantId, tenant: k.tenant, keyVersion: k.version });

export class AtRest {
  constructor(
    private readonly policy: AtRestPolicy,
    /** undefined when the daemon has no manager with mTLS: then nothing is sealed nor opened. */
    private readonly keys: TenantKeySource | undefined,
  ) {}

  /** Whether any new task may be sealed. */
  get sealing(): boolean {
    return this.keys !== undefined && (this.policy.tenants.length > 0 || this.policy.applications.length > 0);
  }

  /**
   * The key a new task of `application` is sealed with; undefined when neither its application
   * nor its tenant is listed. Rejects when the manager cannot say: a task that may belong to a
   * sealed tenant is never stored in plaintext for want of an answer.
   */
  async forNewTask(application: string | undefined): Promise<TenantKey | undefined> {
    if (!this.sealing || !this.keys) return undefined;
    const app = application ?? "";
    const listed = this.policy.applications.includes(app);
    // Only the manager knows an application's tenant: asked unless the answer cannot matter.
    if (!listed && this.policy.tenants.length === 0) return undefined;
    const key = await this.keys.current(app);
    return listed || this.policy.tenants.includes(key.tenant) ? key : undefined;
  }

  /** The key a stored task was sealed with. */
  keyOf(sealed: SealedWith): Promise<TenantKey> {
    if (!this.keys) return Promise.reject(new Error(`task sealed under tenant ${sealed.tenant}'s key version ${sealed.keyVersion}, and this daemon has no manager with mTLS to get it from`));
    return this.keys.version(sealed.tenantId, sealed.keyVersion);
  }
}
