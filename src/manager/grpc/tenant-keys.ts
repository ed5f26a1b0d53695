// damselfly.manager.v1.TenantKeys on the manager's gRPC port: daemons fetch the key that seals
// a tenant's pieces at rest (storage.encryption), the current version for a new task or the
// version a stored task names. Only over mTLS and only for peer and seed-peer certificates of
// the cluster CA: a plaintext manager refuses every call (FAILED_PRECONDITION), since the key
// would cross the network readable. Keys are never logged; a refusal names the caller, the
// answer's tenant and version only.
import { status, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "../../common/logger.js";
import type { Authorizer } from "../../common/grpc/authz.js";
import type { GetTenantKeyRequest, TenantKey } from "../../gen/damselfly/manager/v1/keys.js";
import { NO_ENCRYPTION_KEY, type TenantKeys } from "../tenant-keys.js";
import { errorMessage } from "../../common/errors.js";

export class TenantKeysGrpcService {
  constructor(
    private readonly keys: TenantKeys,
    private readonly authz: Authorizer,
    private readonly log: Logger,
  ) {}

  private async answer(req: GetTenantKeyRequest): Promise<TenantKey | { code: status; details: string }> {
    const tenantId = req.tenantId || (await this.keys.resolveTenant(req.application, req.schedulerClusterId));
    if (tenantId === undefined) return { code: status.NOT_FOUND, details: `no tenant for application "${req.application}" or scheduler cluster ${req.schedulerClusterId}` };
    const key = req.version > 0 ? await this.keys.version(tenantId, req.version) : await this.keys.current(tenantId);
    if (!key) return { code: status.NOT_FOUND, details: req.version > 0 ? `tenant ${tenantId} has no key version ${req.version}` : `tenant ${tenantId} does not exist` };
    return { tenantId: key.tenantId, tenantName: key.tenantName, version: key.version, key: key.key };
  }

  getTenantKey(call: ServerUnaryCall<GetTenantKeyRequest, TenantKey>, callback: sendUnaryData<TenantKey>): void {
    if (!this.authz.enforce) return callback({ code: status.FAILED_PRECONDITION, details: "tenant keys are handed out only over mTLS: this manager's gRPC runs in plaintext (server.grpc.tls)" });
    const denied = this.authz.check(call, "GetTenantKey", ["peer", "seed-peer"]);
    if (denied) return callback(denied);
    if (!this.keys.enabled) return callback({ code: status.FAILED_PRECONDITION, details: NO_ENCRYPTION_KEY });
    this.answer(call.request).then(
      (res) => ("code" in res ? callback(res) : callback(null, res)),
      (err: unknown) => {
        this.log.error({ err: errorMessage(err), tenantId: call.request.tenantId, version: call.request.version }, "GetTenantKey failed");
        callback({ code: status.INTERNAL, details: errorMessage(err) });
      },
    );
  }

  handlers(): UntypedServiceImplementation {
    return { getTenantKey: this.getTenantKey.bind(this) };
  }
}
