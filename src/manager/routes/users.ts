// Users, sessions, roles, permissions and tenants. Sessions are JWTs (sign-in, refresh,
// sign-out revokes the token); a password change or reset invalidates every older token.
import { Type, type Static } from "@sinclair/typebox";
import type { Queryable } from "../db/database.js";
import type { RolePermissionRow, RoleRow, TenantRow, UserRoleRow, UserRow } from "../db/rows.js";
import { actionFor, assertTenant, can, guard, principalOf, type Principal } from "../auth/principal.js";
import { hashPassword, TIMING_DUMMY_HASH, verifyPassword } from "../auth/passwords.js";
import { badRequest, conflict, forbidden, HttpError, notFound, unauthorized } from "../errors.js";
import * as S from "../schemas.js";
import { JWT_SECURITY, type ManagerApp, type RouteContext } from "./context.js";
import { listPage, tenantForCreate, updateRow, withBase, type ColumnKinds } from "./crud.js";

/** RBAC objects, one per API group, as Dragonfly's casbin policy names them. */
export const RBAC_OBJECTS = [
  "users",
  "roles",
  "permissions",
  "clusters",
  "scheduler-clusters",
  "schedulers",
  "scheduler-features",
  "seed-peer-clusters",
  "seed-peers",
  "peers",
  "configs",
  "jobs",
  "applications",
  "personal-access-tokens",
  "audits",
  "tenants",
  "commands",
] as const;

const USER_COLUMNS: ColumnKinds<"users"> = { email: "text", phone: "text", avatar: "text", location: "text", bio: "text", state: "text" };

async function loadUser(q: Queryable, id: number): Promise<UserRow> {
  const [row] = await q.query<UserRow>("SELECT * FROM users WHERE id = $1", [id]);
  if (!row) throw notFound("user");
  return row;
}

/** Self, or a holder of the users permission in the same tenant. */
function checkUserAccess(p: Principal, user: UserRow, method: string): void {
  if (user.id === p.userId) return;
  if (!can(p, "users", actionFor(method))) throw forbidden(`permission denied: ${actionFor(method)} users`);
  assertTenant(p, user.tenant_id);
}

async function createUser(q: Queryable, body: Static<typeof S.SignUp>, tenantId: number, roles: string[]): Promise<UserRow> {
  const hash = await hashPassword(body.password);
  const [row] = await q.query<UserRow>(
    "INSERT INTO users (tenant_id, name, email, password_hash, phone, avatar, location, bio) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING RETURNING *",
    [tenantId, body.name, body.email ?? "", hash, body.phone ?? "", body.avatar ?? "", body.location ?? "", body.bio ?? ""],
  );
  if (!row) throw conflict(`user "${body.name}" already exists`);
  for (const role of roles) await q.query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)", [row.id, role]);
  return row;
}

export function registerUsers(app: ManagerApp, ctx: RouteContext): void {
  const errors = { 400: S.Message, 401: S.Message, 403: S.Message, 404: S.Message };
  const users = { tags: ["users"], security: JWT_SECURITY };
  const rolesTag = { tags: ["roles"], security: JWT_SECURITY };
  const signInLimit = { rateLimit: { max: 20, timeWindow: "1 minute" } };

  app.post(
    "/api/v1/users/signin",
    { config: signInLimit, schema: { tags: ["users"], summary: "sign in with name and password", body: S.SignIn, response: { 200: S.TokenResponse, 400: S.Message, 401: S.Message, 429: S.Message } } },
    async (request) => {
      const { name, password } = request.body;
      const [user] = await ctx.db.query<Pick<UserRow, "id" | "password_hash" | "state" | "token_version">>(
        "SELECT id, password_hash, state, token_version FROM users WHERE name = $1",
        [name],
      );
      // Verify against a dummy hash when the user is unknown so timing does not reveal names.
      const ok = await verifyPassword(password, user?.password_hash ?? TIMING_DUMMY_HASH);
      if (!user || !ok || user.state !== "enable") throw unauthorized("incorrect name or password");
      const { token, expire } = await ctx.jwt.issue(user.id, user.token_version);
      return { token, expire: expire.toISOString() };
    },
  );

  app.post(
    "/api/v1/users/signout",
    { preValidation: guard(ctx.auth, "jwt", { object: "users", selfService: "any" }), schema: { ...users, summary: "sign out: revoke this token", response: { 200: Type.Object({}), 401: S.Message } } },
    async (request) => {
      const p = principalOf(request);
      if (p.jti) await ctx.db.query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING", [p.jti, p.tokenExpiresAt ?? new Date()]);
      return {};
    },
  );

  app.post(
    "/api/v1/users/refresh_token",
    { config: signInLimit, schema: { ...users, summary: "exchange a token (even recently expired) for a fresh one", response: { 200: S.TokenResponse, 401: S.Message } } },
    async (request) => {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "");
      if (!m?.[1]) throw unauthorized();
      const claims = await ctx.jwt.verify(m[1], true);
      if (!claims) throw unauthorized();
      const [user] = await ctx.db.query<Pick<UserRow, "state" | "token_version">>("SELECT state, token_version FROM users WHERE id = $1", [claims.id]);
      if (!user || user.state !== "enable" || user.token_version !== claims.ver) throw unauthorized();
      const revoked = await ctx.db.query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING jti", [
        claims.jti,
        new Date(claims.orig_iat * 1000 + ctx.jwt.options.maxRefreshMs),
      ]);
      // A token already revoked (signed out, or refreshed before) cannot be refreshed again.
      if (revoked.length === 0) throw unauthorized();
      const { token, expire } = await ctx.jwt.issue(claims.id, claims.ver, claims.orig_iat);
      return { token, expire: expire.toISOString() };
    },
  );

  app.post(
    "/api/v1/users/signup",
    { config: signInLimit, schema: { tags: ["users"], summary: "create an account (off unless auth.signUp is enabled)", body: S.SignUp, response: { 200: S.User, 400: S.Message, 403: S.Message, 409: S.Message } } },
    async (request) => {
      if (!ctx.signUp) throw forbidden("sign-up is disabled");
      const row = await ctx.db.transaction((tx) => createUser(tx, request.body, 1, ["guest"]));
      return withBase(row);
    },
  );

  app.post(
    "/api/v1/users",
    { preValidation: guard(ctx.auth, "jwt", { object: "users" }), schema: { ...users, summary: "create a user (Damselfly extension)", body: S.CreateUser, response: { 200: S.User, ...errors, 409: S.Message } } },
    async (request) => {
      const p = principalOf(request);
      const body = request.body;
      const roles = body.roles ?? ["guest"];
      // Only root hands out roles other than guest: anything else would let a tenant admin
      // mint a root account.
      if (!p.isRoot && roles.some((r) => r !== "guest")) throw forbidden("only root may assign roles");
      const row = await ctx.db.transaction(async (tx) => {
        for (const role of roles) {
          const exists = await tx.query("SELECT 1 FROM roles WHERE name = $1", [role]);
          if (exists.length === 0) throw badRequest("body.roles", `role "${role}" does not exist`);
        }
        return createUser(tx, body, tenantForCreate(p, body.tenant_id), roles);
      });
      return withBase(row);
    },
  );

  app.get(
    "/api/v1/users",
    {
      preValidation: guard(ctx.auth, "jwt", { object: "users" }),
      schema: {
        ...users,
        summary: "list users",
        querystring: Type.Object({ ...S.Page, name: Type.Optional(Type.String()), email: Type.Optional(Type.String()), location: Type.Optional(Type.String()), state: Type.Optional(Type.String()) }),
        response: { 200: Type.Array(S.User), ...errors },
      },
    },
    async (request, reply) => {
      const p = principalOf(request);
      const rows = await listPage(ctx.db, request, reply, p, "users", ["name", "email", "location", "state"], "id");
      return rows.map(withBase);
    },
  );

  app.get(
    "/api/v1/users/:id",
    { preValidation: guard(ctx.auth, "jwt", { object: "users", selfService: "rbac" }), schema: { ...users, summary: "get a user", params: S.IdParams, response: { 200: S.User, ...errors } } },
    async (request) => {
      const user = await loadUser(ctx.db, request.params.id);
      checkUserAccess(principalOf(request), user, request.method);
      return withBase(user);
    },
  );

  app.patch(
    "/api/v1/users/:id",
    { preValidation: guard(ctx.auth, "jwt", { object: "users", selfService: "rbac" }), schema: { ...users, summary: "update a user", params: S.IdParams, body: S.UpdateUser, response: { 200: S.User, ...errors } } },
    async (request) => {
      const p = principalOf(request);
      const user = await loadUser(ctx.db, request.params.id);
      checkUserAccess(p, user, request.method);
      const body = request.body;
      if (body.state !== undefined && !(can(p, "users", "*") && user.id !== p.userId)) throw forbidden("only an administrator may enable or disable another user");
      const row = await updateRow(ctx.db, "users", USER_COLUMNS, user.id, body);
      return withBase(row ?? user);
    },
  );

  app.post(
    "/api/v1/users/:id/reset_password",
    {
      preValidation: guard(ctx.auth, "jwt", { object: "users", selfService: "root" }),
      schema: { ...users, summary: "change your password (old_password required) or, as root, reset another user's", params: S.IdParams, body: S.ResetPassword, response: { 200: Type.Object({}), ...errors } },
    },
    async (request) => {
      const p = principalOf(request);
      const user = await loadUser(ctx.db, request.params.id);
      const body = request.body;
      if (user.id === p.userId) {
        if (!body.old_password) throw badRequest("body.old_password", "is required");
        if (!(await verifyPassword(body.old_password, user.password_hash))) throw new HttpError(400, "body.old_password: incorrect password", "body.old_password");
      } else if (!p.isRoot) {
        throw forbidden("only root may reset another user's password");
      }
      await ctx.db.query("UPDATE users SET password_hash = $1, token_version = token_version + 1, updated_at = now() WHERE id = $2", [await hashPassword(body.new_password), user.id]);
      return {};
    },
  );

  app.get(
    "/api/v1/users/:id/roles",
    { preValidation: guard(ctx.auth, "jwt", { object: "users", selfService: "rbac" }), schema: { ...users, summary: "roles of a user", params: S.IdParams, response: { 200: Type.Array(Type.String()), ...errors } } },
    async (request) => {
      const user = await loadUser(ctx.db, request.params.id);
      checkUserAccess(principalOf(request), user, request.method);
      const rows = await ctx.db.query<Pick<UserRoleRow, "role">>("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role", [user.id]);
      return rows.map((r) => r.role);
    },
  );

  const RoleParams = Type.Object({ id: S.Id, role: Type.String({ minLength: 1, maxLength: 100 }) });
  app.put(
    "/api/v1/users/:id/roles/:role",
    { preValidation: guard(ctx.auth, "jwt", { object: "users", rootOnly: true }), schema: { ...users, summary: "give a user a role (root)", params: RoleParams, response: { 200: Type.Object({}), ...errors } } },
    async (request) => {
      const { id, role } = request.params;
      await loadUser(ctx.db, id);
      const exists = await ctx.db.query("SELECT 1 FROM roles WHERE name = $1", [role]);
      if (exists.length === 0) throw notFound(`role "${role}"`);
      await ctx.db.query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING", [id, role]);
      return {};
    },
  );
  app.delete(
    "/api/v1/users/:id/roles/:role",
    { preValidation: guard(ctx.auth, "jwt", { object: "users", rootOnly: true }), schema: { ...users, summary: "take a role from a user (root)", params: RoleParams, response: { 200: Type.Object({}), ...errors } } },
    async (request) => {
      const { id, role } = request.params;
      await loadUser(ctx.db, id);
      await ctx.db.query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2", [id, role]);
      return {};
    },
  );

  // --- roles ---
  const loadRole = async (name: string) => {
    const [role] = await ctx.db.query<Pick<RoleRow, "name" | "builtin">>("SELECT name, builtin FROM roles WHERE name = $1", [name]);
    if (!role) throw notFound(`role "${name}"`);
    const perms = await ctx.db.query<Pick<RolePermissionRow, "object" | "action">>("SELECT object, action FROM role_permissions WHERE role = $1 ORDER BY object, action", [name]);
    return { role: role.name, builtin: role.builtin, permissions: perms };
  };
  const checkPermissions = (perms: Array<{ object: string }>, field: (i: number) => string) =>
    perms.forEach((perm, i) => {
      if (perm.object !== "*" && !(RBAC_OBJECTS as readonly string[]).includes(perm.object)) throw badRequest(field(i), `unknown object "${perm.object}"`);
    });
  const RoleName = Type.Object({ role: Type.String({ minLength: 1, maxLength: 100 }) });
  const rolesRead = guard(ctx.auth, "jwt", { object: "roles" });
  const rolesWrite = guard(ctx.auth, "jwt", { object: "roles", rootOnly: true });

  app.post("/api/v1/roles", { preValidation: rolesWrite, schema: { ...rolesTag, summary: "create a role (root)", body: S.CreateRole, response: { 200: S.Role, ...errors, 409: S.Message } } }, async (request) => {
    const body = request.body;
    checkPermissions(body.permissions, (i) => `body.permissions.${i}.object`);
    await ctx.db.transaction(async (tx) => {
      const inserted = await tx.query("INSERT INTO roles (name) VALUES ($1) ON CONFLICT DO NOTHING RETURNING name", [body.role]);
      if (inserted.length === 0) throw conflict(`role "${body.role}" already exists`);
      for (const perm of body.permissions) await tx.query("INSERT INTO role_permissions (role, object, action) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", [body.role, perm.object, perm.action]);
    });
    return loadRole(body.role);
  });
  app.get("/api/v1/roles", { preValidation: rolesRead, schema: { ...rolesTag, summary: "list roles", response: { 200: Type.Array(S.Role), ...errors } } }, async () => {
    const rows = await ctx.db.query<Pick<RoleRow, "name">>("SELECT name FROM roles ORDER BY name");
    return Promise.all(rows.map((r) => loadRole(r.name)));
  });
  app.get("/api/v1/roles/:role", { preValidation: rolesRead, schema: { ...rolesTag, summary: "get a role", params: RoleName, response: { 200: S.Role, ...errors } } }, async (request) =>
    loadRole(request.params.role),
  );
  app.delete("/api/v1/roles/:role", { preValidation: rolesWrite, schema: { ...rolesTag, summary: "delete a role (root)", params: RoleName, response: { 200: Type.Object({}), ...errors } } }, async (request) => {
    const role = await loadRole(request.params.role);
    if (role.builtin) throw forbidden(`role "${role.role}" is built in`);
    await ctx.db.query("DELETE FROM roles WHERE name = $1", [role.role]);
    return {};
  });
  for (const method of ["POST", "DELETE"] as const) {
    app.route({
      method,
      url: "/api/v1/roles/:role/permissions",
      preValidation: rolesWrite,
      schema: { ...rolesTag, summary: `${method === "POST" ? "add a permission to" : "remove a permission from"} a role (root)`, params: RoleName, body: S.Permission, response: { 200: Type.Object({}), ...errors } },
      handler: async (request) => {
        const role = await loadRole(request.params.role);
        if (role.builtin) throw forbidden(`role "${role.role}" is built in`);
        const perm = request.body;
        checkPermissions([perm], () => "body.object");
        if (method === "POST") await ctx.db.query("INSERT INTO role_permissions (role, object, action) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", [role.role, perm.object, perm.action]);
        else await ctx.db.query("DELETE FROM role_permissions WHERE role = $1 AND object = $2 AND action = $3", [role.role, perm.object, perm.action]);
        return {};
      },
    });
  }

  app.get(
    "/api/v1/permissions",
    { preValidation: guard(ctx.auth, "jwt", { object: "permissions" }), schema: { tags: ["roles"], security: JWT_SECURITY, summary: "every object/action pair a role can hold", response: { 200: Type.Array(S.Permission), ...errors } } },
    () => RBAC_OBJECTS.flatMap((object) => [{ object, action: "read" as const }, { object, action: "*" as const }]),
  );

  // --- tenants (root only) ---
  const tenants = { tags: ["tenants"], security: JWT_SECURITY };
  app.post("/api/v1/tenants", { preValidation: guard(ctx.auth, "jwt", { object: "tenants", rootOnly: true }), schema: { ...tenants, summary: "create a tenant (root)", body: S.CreateTenant, response: { 200: S.Tenant, ...errors, 409: S.Message } } }, async (request) => {
    const body = request.body;
    const [row] = await ctx.db.query<TenantRow>("INSERT INTO tenants (name, bio) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING *", [body.name, body.bio ?? ""]);
    if (!row) throw conflict(`tenant "${body.name}" already exists`);
    return row;
  });
  app.get("/api/v1/tenants", { preValidation: guard(ctx.auth, "jwt", { object: "tenants", rootOnly: true }), schema: { ...tenants, summary: "list tenants (root)", response: { 200: Type.Array(S.Tenant), ...errors } } }, async () =>
    ctx.db.query<TenantRow>("SELECT * FROM tenants ORDER BY id"),
  );
}
