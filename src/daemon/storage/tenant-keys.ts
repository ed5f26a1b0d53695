// The keys that seal pieces at rest, fetched from the manager (damselfly.manager.v1.TenantKeys,
// over the manager section's mTLS). A version's key never changes, so it is kept for the life
// of the process once fetched; which version is current for an application is asked again
// after `currentTtlMs`, so a rotation at the manager reaches new tasks within that time. Keys
// live in this process's memory only: never on disk, in a URL or in a log line.
import { Metadata, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import { TenantKeysClient, type GetTenantKeyRequest, type TenantKey as TenantKeyMessage } from "../../gen/damselfly/manager/v1/keys.js";

export interface TenantKey {
  tenantId: number;
  tenant: string;
  version: number;
  /** 32 bytes of AES-256 key material. */
  key: Buffer;
}

/** Where AtRest (at-rest.ts) gets keys from. */
export interface TenantKeySource {
  /** The key new tasks of `application` are sealed under now, with its tenant. */
  current(application: string): Promise<TenantKey>;
  /** A tenant's key at `version` (a stored task's). */
  version(tenantId: number, version: number): Promise<TenantKey>;
}

export interface ManagerTenantKeysOptions {
  managerAddr: string;
  /** The `manager` section's mTLS (the manager refuses key requests in plaintext). */
  credentials: ChannelCredentials;
  /** host.schedulerClusterID: whose tenant seals tasks of applications the manager does not know (0: the default cluster's). */
  schedulerClusterId: number;
  /** How long the current version for an application is trusted before asking again. */
  currentTtlMs: number;
  rpcTimeoutMs?: number;
}

export class ManagerTenantKeys implements TenantKeySource {
  private readonly client: InstanceType<typeof TenantKeysClient>;
  private readonly versions = new Map<string, Promise<TenantKey>>();
  private readonly currents = new Map<string, { at: number; key: Promise<TenantKey> }>();

  constructor(private readonly opts: ManagerTenantKeysOptions) {
    this.client = new TenantKeysClient(opts.managerAddr, opts.credentials);
  }

  current(application: string): Promise<TenantKey> {
    const held = this.currents.get(application);
    if (held && Date.now() - held.at < this.opts.currentTtlMs) return held.key;
    const key = this.fetch({ tenantId: 0, application, schedulerClusterId: this.opts.schedulerClusterId, version: 0 });
    this.currents.set(application, { at: Date.now(), key });
    // A failure is not remembered: the next task asks again.
    key.then(
      (k) => this.versions.set(`${k.tenantId}/${k.version}`, Promise.resolve(k)),
      () => this.currents.get(application)?.key === key && this.currents.delete(application),
    );
    return key;
  }

  version(tenantId: number, version: number): Promise<TenantKey> {
    const id = `${tenantId}/${version}`;
    const held = this.versions.get(id);
    if (held) return held;
    const key = this.fetch({ tenantId, application: "", schedulerClusterId: 0, version });
    this.versions.set(id, key);
    key.catch(() => this.versions.get(id) === key && this.versions.delete(id));
    return key;
  }

  private fetch(req: GetTenantKeyRequest): Promise<TenantKey> {
    const what = req.tenantId ? `tenant ${req.tenantId} key version ${req.version}` : `the current key for application "${req.application}"`;
    return new Promise((resolve, reject) => {
      this.client.getTenantKey(req, new Metadata(), { deadline: Date.now() + (this.opts.rpcTimeoutMs ?? 10_000) }, (err: ServiceError | null, res?: TenantKeyMessage) => {
        if (err || !res) return reject(new Error(`the manager at ${this.opts.managerAddr} did not give ${what}: ${err?.details ?? "empty answer"}`));
        if (res.key.length !== 32 || res.version < 1 || res.tenantId < 1) return reject(new Error(`the manager at ${this.opts.managerAddr} gave a malformed key for ${what} (version ${res.version}, ${res.key.length} bytes)`));
        resolve({ tenantId: res.tenantId, tenant: res.tenantName, version: res.version, key: res.key });
      });
    });
  }

  close(): void {
    this.client.close();
  }
}
