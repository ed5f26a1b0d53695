// Personal access tokens: the secret is returned once, in the response to POST; afterwards only
// its SHA-256 exists. Revoke by PATCH state=inactive or DELETE.
import type { PersonalAccessTokenRow, UserRow } from "../db/rows.js";
import { guard, principalOf, type Principal } from "../auth/principal.js";
import { generateAccessToken } from "../auth/tokens.js";
import { badRequest, conflict, forbidden } from "../errors.js";
import * as S from "../schemas.js";
import { JWT_SECURITY, type ManagerApp, type RouteContext } from "./context.js";
import { presentRows, registerCrud, type CrudSpec } from "./crud.js";

async function checkOwner(ctx: RouteContext, p: Principal, userId: unknown): Promise<number> {
  if (userId === undefined || userId === 0 || userId === p.userId) return p.userId;
  if (!p.isRoot) throw forbidden("tokens can only be created for yourself");
  const [u] = await ctx.db.query<Pick<UserRow, "id">>("SELECT id FROM users WHERE id = $1", [userId]);
  if (!u) throw badRequest("body.user_id", `user ${JSON.stringify(userId)} does not exist`);
  return u.id;
}

export function registerTokens(app: ManagerApp, ctx: RouteContext): void {
  const spec: CrudSpec<"personal_access_tokens", typeof S.PersonalAccessToken> = {
    path: "/api/v1/personal-access-tokens",
    object: "personal-access-tokens",
    table: "personal_access_tokens",
    what: "personal access token",
    tag: "personal-access-tokens",
    columns: { bio: "text", scopes: "json", state: "text", expired_at: "text" },
    tenant: { kind: "direct" },
    filters: { state: "text", user_id: "int" },
    // Creation has its own handler below (it must return the secret once).
    create: S.CreatePersonalAccessToken,
    update: S.UpdatePersonalAccessToken,
    response: S.PersonalAccessToken,
    present: presentRows,
    prepare: (v) => {
      if (typeof v.expired_at === "string" && Number.isNaN(Date.parse(v.expired_at))) throw badRequest("body.expired_at", "invalid date-time");
    },
  };

  app.post(
    spec.path,
    {
      preValidation: guard(ctx.auth, "jwt", { object: spec.object }),
      schema: { tags: [spec.tag], security: JWT_SECURITY, summary: "create a personal access token (the token is shown only in this response)", body: S.CreatePersonalAccessToken, response: { 200: S.PersonalAccessToken, 400: S.Message, 401: S.Message, 403: S.Message, 409: S.Message } },
    },
    async (request) => {
      const p = principalOf(request);
      const body = request.body;
      const expires = new Date(body.expired_at);
      if (Number.isNaN(expires.getTime())) throw badRequest("body.expired_at", "invalid date-time");
      if (expires.getTime() <= Date.now()) throw badRequest("body.expired_at", "must be in the future");
      const userId = await checkOwner(ctx, p, body.user_id);
      const [owner] = await ctx.db.query<Pick<UserRow, "tenant_id">>("SELECT tenant_id FROM users WHERE id = $1", [userId]);
      const { token, hash } = generateAccessToken();
      const [row] = await ctx.db.query<PersonalAccessTokenRow>(
        `INSERT INTO personal_access_tokens (tenant_id, user_id, name, bio, token_hash, scopes, state, expired_at)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'active', $7) ON CONFLICT (name) DO NOTHING RETURNING *`,
        [owner?.tenant_id ?? p.tenantId, userId, body.name, body.bio ?? "", hash, JSON.stringify(body.scopes && body.scopes.length > 0 ? [...new Set(body.scopes)] : ["job", "cluster"]), expires],
      );
      if (!row) throw conflict(`a personal access token named "${body.name}" already exists`);
      return { ...row, is_del: 0, token };
    },
  );

  // List, get, update (revoke) and delete share the generic handlers; `token_hash` is not in
  // the response schema so it is never serialised.
  registerCrud(app, ctx, spec, { skipCreate: true });
}
