// A tenant's at-rest keys under /api/v1/tenants/:id/keys (root only, like tenants): rotate
// (a new version seals the tenant's new tasks from then on; tasks sealed earlier keep theirs)
// and list the versions. Key material is never part of an answer: only daemons get it, over
// mTLS (grpc/tenant-keys.ts).
import { Type } from "@sinclair/typebox";
import { guard } from "../auth/principal.js";
import { conflict, notFound } from "../errors.js";
import * as S from "../schemas.js";
import { NO_ENCRYPTION_KEY, type TenantKeys } from "../tenant-keys.js";
import { JWT_SECURITY, type ManagerApp, type RouteContext } from "./context.js";

export function registerTenantKeys(app: ManagerApp, ctx: RouteContext, keys: TenantKeys): void {
  const errors = { 400: S.Message, 401: S.Message, 403: S.Message, 404: S.Message, 409: S.Message };
  const common = { tags: ["tenants"], security: JWT_SECURITY, params: S.IdParams };
  const pre = guard(ctx.auth, "jwt", { object: "tenants", rootOnly: true });
  const tenant = async (id: number): Promise<number> => {
    if (!(await keys.tenantExists(id))) throw notFound("tenant");
    return id;
  };
  app.post(
    "/api/v1/tenants/:id/keys",
    { preValidation: pre, schema: { ...common, summary: "rotate a tenant's at-rest key: new tasks are sealed under the new version (root)", response: { 200: S.TenantKeyVersion, ...errors } } },
    async (request) => {
      const id = await tenant(request.params.id);
      // A key that could not be stored wrapped is not made at all.
      if (!keys.enabled) throw conflict(NO_ENCRYPTION_KEY);
      const row = await keys.rotate(id);
      request.log.info({ tenantId: row.tenant_id, version: row.version }, "tenant key rotated");
      return row;
    },
  );
  app.get(
    "/api/v1/tenants/:id/keys",
    { preValidation: pre, schema: { ...common, summary: "a tenant's at-rest key versions, newest first, without the keys (root)", response: { 200: Type.Array(S.TenantKeyVersion), ...errors } } },
    async (request) => keys.versions(await tenant(request.params.id)),
  );
}
