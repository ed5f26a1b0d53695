// Who is calling: a user signed in with a JWT (REST /api/v1) or a personal access token (open
// API /oapi/v1). Both resolve to the same Principal so RBAC and tenancy are checked one way.
import type { FastifyReply, FastifyRequest, preValidationAsyncHookHandler } from "fastify";
import type { Queryable } from "../db/database.js";
import type { PersonalAccessTokenRow, RolePermissionRow, UserRoleRow, UserRow } from "../db/rows.js";
import { forbidden, unauthorized } from "../errors.js";
import { accessTokenMatches, hashAccessToken, type JwtService } from "./tokens.js";

export interface Principal {
  kind: "user" | "pat";
  userId: number;
  userName: string;
  tenantId: number;
  /** Holders of the built-in root role see and change every tenant's objects. */
  isRoot: boolean;
  roles: string[];
  permissions: Array<{ object: string; action: string }>;
  /** PAT scopes (`job`, `cluster`); null for JWT sessions. */
  scopes: string[] | null;
  jti?: string;
  tokenExpiresAt?: Date;
}

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** The action an HTTP method needs, as Dragonfly's RBAC maps it (GET reads, the rest write). */
export function actionFor(method: string): "read" | "*" {
  return method === "GET" || method === "HEAD" ? "read" : "*";
}

export function can(p: Principal, object: string, action: string): boolean {
  return p.permissions.some((perm) => (perm.object === "*" || perm.object === object) && (perm.action === "*" || perm.action === action));
}

function bearer(request: FastifyRequest): string | undefined {
  const h = request.headers.authorization;
  if (typeof h !== "string") return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

/** What a session or token needs of its user. */
type SessionUser = Pick<UserRow, "id" | "name" | "tenant_id" | "state" | "token_version">;

export class Authenticator {
  constructor(
    private readonly db: Queryable,
    private readonly jwt: JwtService,
  ) {}

  private async principalFor(user: SessionUser, kind: Principal["kind"], scopes: string[] | null): Promise<Principal> {
    const rows = await this.db.query<{ role: UserRoleRow["role"]; object: RolePermissionRow["object"] | null; action: RolePermissionRow["action"] | null }>(
      "SELECT ur.role, rp.object, rp.action FROM user_roles ur LEFT JOIN role_permissions rp ON rp.role = ur.role WHERE ur.user_id = $1",
      [user.id],
    );
    const roles = [...new Set(rows.map((r) => r.role))];
    // A role without permissions joins as one row of NULLs.
    const permissions = rows.flatMap((r) => (r.object !== null && r.action !== null ? [{ object: r.object, action: r.action }] : []));
    return { kind, userId: user.id, userName: user.name, tenantId: user.tenant_id, isRoot: roles.includes("root"), roles, permissions, scopes };
  }

  async fromJwt(request: FastifyRequest): Promise<Principal> {
    const token = bearer(request);
    if (!token) throw unauthorized();
    const claims = await this.jwt.verify(token);
    if (!claims) throw unauthorized();
    const [user] = await this.db.query<SessionUser>("SELECT id, name, tenant_id, state, token_version FROM users WHERE id = $1", [claims.id]);
    if (!user || user.state !== "enable" || user.token_version !== claims.ver) throw unauthorized();
    const revoked = await this.db.query("SELECT 1 FROM revoked_tokens WHERE jti = $1", [claims.jti]);
    if (revoked.length > 0) throw unauthorized();
    const p = await this.principalFor(user, "user", null);
    p.jti = claims.jti;
    p.tokenExpiresAt = new Date(claims.exp * 1000);
    return p;
  }

  async fromAccessToken(request: FastifyRequest): Promise<Principal> {
    const token = bearer(request);
    if (!token) throw unauthorized();
    // The lookup key is the token's SHA-256, so timing of the index lookup reveals nothing about
    // the secret; the final comparison is constant-time anyway.
    const [row] = await this.db.query<Pick<PersonalAccessTokenRow, "id" | "token_hash" | "scopes" | "state" | "expired_at" | "user_id">>(
      "SELECT id, token_hash, scopes, state, expired_at, user_id FROM personal_access_tokens WHERE token_hash = $1",
      [hashAccessToken(token)],
    );
    if (!row || !accessTokenMatches(token, row.token_hash)) throw unauthorized();
    if (row.state !== "active") throw forbidden("personal access token is inactive");
    if (row.expired_at.getTime() <= Date.now()) throw forbidden("personal access token has expired");
    const [user] = await this.db.query<SessionUser>("SELECT id, name, tenant_id, state, token_version FROM users WHERE id = $1", [row.user_id]);
    if (!user || user.state !== "enable") throw forbidden("the token's user is disabled");
    await this.db.query("UPDATE personal_access_tokens SET last_used_at = now() WHERE id = $1", [row.id]);
    return this.principalFor(user, "pat", row.scopes);
  }
}

export interface GuardOptions {
  /** RBAC object, e.g. "jobs". */
  object: string;
  /** Personal access token scope required on the open API (`job` or `cluster`). */
  scope?: string;
  /** Only root may call (role management, tenants). */
  rootOnly?: boolean;
  /**
   * Routes on a user (`:id`) that a user may call on itself without any permission; on other
   * users they need the RBAC permission ("rbac") or root ("root"). "any" skips the check
   * entirely (sign-out).
   */
  selfService?: "rbac" | "root" | "any";
}

/** The `:id` of a route on a user; this hook runs before params are validated, so it may be anything. */
function userIdParam(request: FastifyRequest): number {
  const params = request.params;
  return params && typeof params === "object" && "id" in params ? Number(params.id) : NaN;
}

/** A preValidation hook (auth runs before body validation, so 401/403 come before 400): 401 without valid credentials, 403 without the permission, scope or role. */
export function guard(auth: Authenticator, via: "jwt" | "pat", opts: GuardOptions): preValidationAsyncHookHandler {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const p = via === "jwt" ? await auth.fromJwt(request) : await auth.fromAccessToken(request);
    request.principal = p;
    if (via === "pat" && opts.scope && !(p.scopes ?? []).includes(opts.scope)) {
      throw forbidden(`token does not have the required scope: ${opts.scope}`);
    }
    if (opts.rootOnly && !p.isRoot) throw forbidden("only root may do this");
    if (opts.selfService === "any") return;
    if (opts.selfService && userIdParam(request) === p.userId) return;
    if (opts.selfService === "root" && !p.isRoot) throw forbidden("only root may do this to another user");
    if (!can(p, opts.object, actionFor(request.method))) throw forbidden(`permission denied: ${actionFor(request.method)} ${opts.object}`);
  };
}

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw unauthorized();
  return request.principal;
}

/** Tenant filter for queries: null for root (everything), else the caller's tenant. */
export function tenantFilter(p: Principal): number | null {
  return p.isRoot ? null : p.tenantId;
}

/** 403 when an object of another tenant is touched by a non-root caller. */
export function assertTenant(p: Principal, tenantId: number): void {
  if (!p.isRoot && p.tenantId !== tenantId) throw forbidden("object belongs to another tenant");
}
