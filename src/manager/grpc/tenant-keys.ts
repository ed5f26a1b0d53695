// damselfly.manager.v1.TenantKeys on the manager's gRPC port: daemons fetch the key that seals
// a tenant's pieces at rest (storage.encryption), the current version for a new task or the
// version a stored task names. Only over mTLS, only for peer and seed-peer certificates of the
// cluster CA, and only for the tenants of the clusters the manager has the caller's host on
// record in (tenant-access.ts): a certificate of the shared CA alone does not open another
// tenant's tasks. A plaintext manager refuses every call (FAILED_PRECONDITION), since the key
// would cross the network readable. Keys are never logged; a refusal names the caller and the
// tenant only, and is logged once per caller.
import { status, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "../../common/logger.js";
import { Authorizer, type Denial } from "../../common/grpc/authz.js";
import type { Identity } from "../../common/tls/identity.js";
import type { GetTenantKeyRequest, TenantKey } from "../../gen/damselfly/manager/v1/keys.js";
import { NO_ENCRYPTION_KEY, type TenantKeys } from "../tenant-keys.js";
import { ownClusterTenant, type TenantAccess } from "../tenant-access.js";
import { errorMessage } from "../../common/errors.js";

const RPC = "GetTenantKey";

type Answer = TenantKey | Denial | { code: status; details: string };

export class TenantKeysGrpcService {
  constructor(
    private readonly keys: TenantKeys,
    private readonly access: TenantAccess,
    private readonly authz: Authorizer,
    private readonly log: Logger,
  ) {}

  private async answer(call: ServerUnaryCall<GetTenantKeyRequest, TenantKey>, id: Identity): Promise<Answer> {
    const req = call.request;
    const record = await this.access.recordOf(id);
    if (!record) {
      const why = id.role === "peer" ? `no peers row for host ${id.name}, and no scheduler of this manager's clusters lists it` : `no seed_peers row for host ${id.name}`;
      return this.authz.refuse(call, RPC, `${RPC}: ${id.role} ${id.name} is not on record at this manager (${why}); a host gets the keys of the tenants of the clusters it is registered in`);
    }
    // Whose key: the tenant asked for by id (a stored task's), else the application's tenant,
    // else the tenant of the caller's own cluster as the manager records it (never the
    // request's cluster id unless the record has the caller in that cluster).
    const tenantId = req.tenantId || (await this.keys.applicationTenant(req.application)) || ownClusterTenant(record, req.schedulerClusterId);
    if (tenantId === undefined) {
      return { code: status.FAILED_PRECONDITION, details: `${record.description} is in clusters of several tenants and scheduler cluster ${req.schedulerClusterId} is not one of its own: set host.schedulerClusterID to the cluster whose tenant seals its tasks` };
    }
    if (!record.tenants.has(tenantId)) {
      // The same answer whether the tenant exists or not: no probing for other tenants.
      return this.authz.refuse(call, RPC, `${RPC}: ${record.description} is not a host of tenant ${tenantId}`, { tenantId, tenant: await this.keys.tenantName(tenantId), application: req.application });
    }
    const key = req.version > 0 ? await this.keys.version(tenantId, req.version) : await this.keys.current(tenantId);
    if (!key) return { code: status.NOT_FOUND, details: req.version > 0 ? `tenant ${tenantId} has no key version ${req.version}` : `tenant ${tenantId} does not exist` };
    return { tenantId: key.tenantId, tenantName: key.tenantName, version: key.version, key: key.key };
  }

  getTenantKey(call: ServerUnaryCall<GetTenantKeyRequest, TenantKey>, callback: sendUnaryData<TenantKey>): void {
    if (!this.authz.enforce) return callback({ code: status.FAILED_PRECONDITION, details: "tenant keys are handed out only over mTLS: this manager's gRPC runs in plaintext (server.grpc.tls)" });
    const denied = this.authz.check(call, RPC, ["peer", "seed-peer"]);
    if (denied) return callback(denied);
    if (!this.keys.enabled) return callback({ code: status.FAILED_PRECONDITION, details: NO_ENCRYPTION_KEY });
    // check() let the call through: it carries an identity of a peer or seed peer.
    const id = Authorizer.callerOf(call) as Identity;
    this.answer(call, id).then(
      (res) => ("code" in res ? callback(res) : callback(null, res)),
      (err: unknown) => {
        this.log.error({ err: errorMessage(err), caller: `${id.role} ${id.name}`, tenantId: call.request.tenantId, version: call.request.version }, "GetTenantKey failed");
        callback({ code: status.INTERNAL, details: errorMessage(err) });
      },
    );
  }

  handlers(): UntypedServiceImplementation {
    return { getTenantKey: this.getTenantKey.bind(this) };
  }
}
