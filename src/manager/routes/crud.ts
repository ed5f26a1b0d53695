// Create/read/update/delete routes for the resources that are plain rows (schedulers, seed
// peers, peers, applications, configs, scheduler and seed peer clusters). Each spec says which
// body fields map to which columns and how a row belongs to a tenant, so RBAC, tenancy,
// pagination and validation behave the same on every one of them.
import type { TSchema } from "@sinclair/typebox";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Queryable, Row } from "../db/database.js";
import { assertTenant, guard, principalOf, tenantFilter, type Principal } from "../auth/principal.js";
import { badRequest, forbidden, notFound } from "../errors.js";
import { IdParams, Message, Page } from "../schemas.js";
import { JWT_SECURITY, type RouteContext } from "./context.js";

export type ColumnKind = "text" | "int" | "bool" | "json";

export type TenantRule =
  | { kind: "direct" }
  | { kind: "none" }
  | { kind: "via"; column: string; parent: "scheduler_clusters" | "seed_peer_clusters"; what: string };

export interface CrudSpec {
  path: string;
  object: string;
  table: string;
  what: string;
  tag: string;
  columns: Record<string, ColumnKind>;
  tenant: TenantRule;
  filters: Record<string, ColumnKind>;
  create: TSchema;
  update?: TSchema;
  response: TSchema;
  /** Extra checks or derived columns before insert/update; may throw HttpError. */
  prepare?: (values: Record<string, unknown>, p: Principal, q: Queryable, isCreate: boolean) => Promise<void> | void;
  /** Extra response fields. */
  decorate?: (rows: Row[], q: Queryable) => Promise<void>;
  /** Runs after a create or update (e.g. linking tables). */
  after?: (row: Row, body: Record<string, unknown>, p: Principal, q: Queryable) => Promise<void>;
}

export function sqlValue(kind: ColumnKind, v: unknown): unknown {
  return kind === "json" ? JSON.stringify(v ?? {}) : v;
}
const placeholder = (kind: ColumnKind, n: number) => (kind === "json" ? `$${n}::jsonb` : `$${n}`);

/** SQL predicate limiting rows to a tenant, with its parameter. */
export function tenantPredicate(rule: TenantRule, tenantId: number | null, n: number, alias = ""): { sql: string; params: unknown[] } {
  if (tenantId === null || rule.kind === "none") return { sql: "TRUE", params: [] };
  if (rule.kind === "direct") return { sql: `${alias}tenant_id = $${n}`, params: [tenantId] };
  return { sql: `${alias}${rule.column} IN (SELECT id FROM ${rule.parent} WHERE tenant_id = $${n})`, params: [tenantId] };
}

/** The tenant owning a row (via its parent cluster when needed); null for global rows. */
export async function tenantOfRow(q: Queryable, rule: TenantRule, row: Row): Promise<number | null> {
  if (rule.kind === "none") return null;
  if (rule.kind === "direct") return row.tenant_id as number;
  const [parent] = await q.query<{ tenant_id: number }>(`SELECT tenant_id FROM ${rule.parent} WHERE id = $1`, [row[rule.column]]);
  return parent?.tenant_id ?? null;
}

export function withBase<T extends Row>(row: T): T & { is_del: number } {
  return { ...row, is_del: 0 };
}

export async function insertRow(q: Queryable, table: string, columns: Record<string, ColumnKind>, values: Record<string, unknown>): Promise<Row> {
  const keys = Object.keys(values).filter((k) => k in columns || k === "tenant_id");
  const kinds = keys.map((k) => columns[k] ?? "int");
  const sql = `INSERT INTO ${table} (${keys.join(", ")}) VALUES (${keys.map((k, i) => placeholder(kinds[i] ?? "text", i + 1)).join(", ")}) RETURNING *`;
  const [row] = await q.query(sql, keys.map((k, i) => sqlValue(kinds[i] ?? "text", values[k])));
  return row as Row;
}

export async function updateRow(q: Queryable, table: string, columns: Record<string, ColumnKind>, id: number, values: Record<string, unknown>): Promise<Row | undefined> {
  const keys = Object.keys(values).filter((k) => k in columns && values[k] !== undefined);
  const sets = keys.map((k, i) => `${k} = ${placeholder(columns[k] ?? "text", i + 1)}`);
  sets.push("updated_at = now()");
  const [row] = await q.query(`UPDATE ${table} SET ${sets.join(", ")} WHERE id = $${keys.length + 1} RETURNING *`, [
    ...keys.map((k) => sqlValue(columns[k] ?? "text", values[k])),
    id,
  ]);
  return row;
}

export function paginate(reply: FastifyReply, request: FastifyRequest, total: number, page: number, perPage: number): void {
  // Dragonfly's console reads the total from the Link header's last page; we send both.
  const last = Math.max(1, Math.ceil(total / perPage));
  const base = request.url.split("?")[0] ?? "";
  const link = (p: number, rel: string) => `<${base}?page=${p}&per_page=${perPage}>;rel=${rel}`;
  const links = [link(1, "first"), link(last, "last")];
  if (page > 1) links.push(link(page - 1, "prev"));
  if (page < last) links.push(link(page + 1, "next"));
  void reply.header("Link", links.join(",")).header("X-Total-Count", String(total));
}

/**
 * One page of a table for a list route: equality filters taken from the query string (empty
 * values ignored), the caller's tenant unless root, the total in the paging headers.
 */
export async function listPage(q: Queryable, request: FastifyRequest, reply: FastifyReply, p: Principal, table: string, filterKeys: readonly string[], order: "id" | "id DESC"): Promise<Row[]> {
  const query = request.query as Record<string, unknown>;
  const page = (query.page as number | undefined) ?? 1;
  const perPage = (query.per_page as number | undefined) ?? 10;
  const where: string[] = [];
  const params: unknown[] = [];
  for (const k of filterKeys) {
    if (query[k] === undefined || query[k] === "") continue;
    params.push(query[k]);
    where.push(`${k} = $${params.length}`);
  }
  const t = tenantFilter(p);
  if (t !== null) {
    params.push(t);
    where.push(`tenant_id = $${params.length}`);
  }
  const cond = where.length ? `WHERE ${where.join(" AND ")}` : "";
  const [count] = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} ${cond}`, params);
  const rows = await q.query(`SELECT * FROM ${table} ${cond} ORDER BY ${order} LIMIT ${perPage} OFFSET ${(page - 1) * perPage}`, params);
  paginate(reply, request, count?.n ?? 0, page, perPage);
  return rows;
}

export async function loadScoped(ctx: RouteContext, spec: Pick<CrudSpec, "table" | "tenant" | "what">, id: number, p: Principal): Promise<Row> {
  const [row] = await ctx.db.query(`SELECT * FROM ${spec.table} WHERE id = $1`, [id]);
  if (!row) throw notFound(spec.what);
  const tenant = await tenantOfRow(ctx.db, spec.tenant, row);
  if (tenant !== null) assertTenant(p, tenant);
  return row;
}

/** Checks that a referenced cluster exists and is the caller's (400/403). */
export async function checkParent(q: Queryable, rule: TenantRule, values: Record<string, unknown>, p: Principal): Promise<void> {
  if (rule.kind !== "via" || values[rule.column] === undefined) return;
  const [parent] = await q.query<{ tenant_id: number }>(`SELECT tenant_id FROM ${rule.parent} WHERE id = $1`, [values[rule.column]]);
  if (!parent) throw badRequest(`body.${rule.column}`, `${rule.what} ${String(values[rule.column])} does not exist`);
  assertTenant(p, parent.tenant_id);
}

/** Picks the tenant for a new object: the caller's, or (root only) the one named in the body. */
export function tenantForCreate(p: Principal, requested: unknown): number {
  if (typeof requested === "number" && requested !== p.tenantId) {
    if (!p.isRoot) throw forbidden("cannot create objects in another tenant");
    return requested;
  }
  return p.tenantId;
}

export function registerCrud(app: FastifyInstance, ctx: RouteContext, spec: CrudSpec, options: { skipCreate?: boolean } = {}): void {
  const pre = guard(ctx.auth, "jwt", { object: spec.object });
  const common = { tags: [spec.tag], security: JWT_SECURITY };
  const errors = { 400: Message, 401: Message, 403: Message, 404: Message };
  const filterSchema = Object.fromEntries(
    Object.entries(spec.filters).map(([k, kind]) => [k, Type.Optional(kind === "int" ? Type.Integer() : kind === "bool" ? Type.Boolean() : Type.String())]),
  );

  const finish = async (rows: Row[]) => {
    if (spec.decorate) await spec.decorate(rows, ctx.db);
    return rows.map(withBase);
  };

  if (!options.skipCreate) app.post(
    spec.path,
    { preValidation: pre, schema: { ...common, summary: `create a ${spec.what}`, body: spec.create, response: { 200: spec.response, ...errors, 409: Message } } },
    async (request) => {
      const p = principalOf(request);
      const body = request.body as Record<string, unknown>;
      const values: Record<string, unknown> = {};
      for (const k of Object.keys(spec.columns)) if (body[k] !== undefined) values[k] = body[k];
      if (spec.tenant.kind === "direct") values.tenant_id = tenantForCreate(p, body.tenant_id);
      await checkParent(ctx.db, spec.tenant, values, p);
      if (spec.prepare) await spec.prepare(values, p, ctx.db, true);
      const row = await ctx.db.transaction(async (tx) => {
        const r = await insertRow(tx, spec.table, spec.columns, values);
        if (spec.after) await spec.after(r, body, p, tx);
        return r;
      });
      const [out] = await finish([row]);
      return out;
    },
  );

  app.get(
    spec.path,
    { preValidation: pre, schema: { ...common, summary: `list ${spec.what}s`, querystring: Type.Object({ ...Page, ...filterSchema }), response: { 200: Type.Array(spec.response), ...errors } } },
    async (request, reply) => {
      const p = principalOf(request);
      const query = request.query as Record<string, unknown>;
      const page = (query.page as number | undefined) ?? 1;
      const perPage = (query.per_page as number | undefined) ?? 10;
      const where: string[] = [];
      const params: unknown[] = [];
      for (const k of Object.keys(spec.filters)) {
        if (query[k] === undefined || query[k] === "") continue;
        params.push(query[k]);
        where.push(`${k} = $${params.length}`);
      }
      const t = tenantPredicate(spec.tenant, tenantFilter(p), params.length + 1);
      where.push(t.sql);
      params.push(...t.params);
      const cond = where.join(" AND ");
      const [count] = await ctx.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${spec.table} WHERE ${cond}`, params);
      const rows = await ctx.db.query(`SELECT * FROM ${spec.table} WHERE ${cond} ORDER BY id LIMIT ${perPage} OFFSET ${(page - 1) * perPage}`, params);
      paginate(reply, request, count?.n ?? 0, page, perPage);
      return finish(rows);
    },
  );

  app.get(
    `${spec.path}/:id`,
    { preValidation: pre, schema: { ...common, summary: `get a ${spec.what}`, params: IdParams, response: { 200: spec.response, ...errors } } },
    async (request) => {
      const row = await loadScoped(ctx, spec, (request.params as { id: number }).id, principalOf(request));
      const [out] = await finish([row]);
      return out;
    },
  );

  if (spec.update) {
    app.patch(
      `${spec.path}/:id`,
      { preValidation: pre, schema: { ...common, summary: `update a ${spec.what}`, params: IdParams, body: spec.update, response: { 200: spec.response, ...errors, 409: Message } } },
      async (request) => {
        const p = principalOf(request);
        const id = (request.params as { id: number }).id;
        await loadScoped(ctx, spec, id, p);
        const body = request.body as Record<string, unknown>;
        const values: Record<string, unknown> = {};
        for (const k of Object.keys(spec.columns)) if (body[k] !== undefined) values[k] = body[k];
        await checkParent(ctx.db, spec.tenant, values, p);
        if (spec.prepare) await spec.prepare(values, p, ctx.db, false);
        const row = await ctx.db.transaction(async (tx) => {
          const r = await updateRow(tx, spec.table, spec.columns, id, values);
          if (!r) throw notFound(spec.what);
          if (spec.after) await spec.after(r, body, p, tx);
          return r;
        });
        const [out] = await finish([row]);
        return out;
      },
    );
  }

  app.delete(
    `${spec.path}/:id`,
    { preValidation: pre, schema: { ...common, summary: `delete a ${spec.what}`, params: IdParams, response: { 200: Type.Object({}), ...errors } } },
    async (request) => {
      const id = (request.params as { id: number }).id;
      await loadScoped(ctx, spec, id, principalOf(request));
      await ctx.db.query(`DELETE FROM ${spec.table} WHERE id = $1`, [id]);
      return {};
    },
  );
}
