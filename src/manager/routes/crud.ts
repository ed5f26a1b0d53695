// Create/read/update/delete routes for the resources that are plain rows (schedulers, seed
// peers, peers, applications, configs, scheduler and seed peer clusters). Each spec says which
// body fields map to which columns and how a row belongs to a tenant, so RBAC, tenancy,
// pagination and validation behave the same on every one of them.
//
// Typing: a spec is checked where it is declared — its table's row type (rows.ts) against its
// response schema (through `present`), its column names against the table. The handlers here
// serve any spec, so they see a validated body as what every one of its schemas is, an object
// (RequestObject), and copy the fields the spec names into column values.
import { Type, type Static, type TObject } from "@sinclair/typebox";
import type { FastifyReply } from "fastify";
import type { Queryable } from "../db/database.js";
import type { Column, ObjectTable, TableName, Tables } from "../db/rows.js";
import { assertTenant, guard, principalOf, tenantFilter, type Principal } from "../auth/principal.js";
import { badRequest, forbidden, notFound } from "../errors.js";
import { IdParams, Message, Page } from "../schemas.js";
import { JWT_SECURITY, type ManagerApp, type RouteContext } from "./context.js";

const COLUMN_KINDS = ["text", "int", "bool", "json"] as const;
export type ColumnKind = (typeof COLUMN_KINDS)[number];

/** How the columns of table K that a route writes or filters on are bound. */
export type ColumnKinds<K extends TableName> = { readonly [C in Column<K>]?: ColumnKind };

/** Column values for an INSERT or UPDATE, by column name; keys outside the spec's columns are never written. */
export type ColumnValues = Record<string, unknown>;

/** A request body or query string after validation, as code serving several schemas sees it. */
export type RequestObject = Readonly<Record<string, unknown>>;

export type TenantRule<K extends TableName> =
  | { kind: "direct" }
  | { kind: "none" }
  | { kind: "via"; column: Column<K>; parent: "scheduler_clusters" | "seed_peer_clusters"; what: string };

export interface CrudSpec<K extends ObjectTable, R extends TObject> {
  path: string;
  object: string;
  table: K;
  what: string;
  tag: string;
  columns: ColumnKinds<K>;
  tenant: TenantRule<K>;
  filters: ColumnKinds<K>;
  create: TObject;
  update?: TObject;
  response: R;
  /** Extra checks or derived columns before insert/update; may throw HttpError. */
  prepare?: (values: ColumnValues, p: Principal, q: Queryable, isCreate: boolean) => Promise<void> | void;
  /** The response objects of rows: the row's fields, less what is hidden, plus what the row does not hold. */
  present: (rows: Array<Tables[K]>, q: Queryable) => Promise<Array<Static<R>>>;
  /** Runs after a create or update (e.g. linking tables). */
  after?: (row: Tables[K], body: RequestObject, p: Principal, q: Queryable) => Promise<void>;
}

function isColumnKind(v: unknown): v is ColumnKind {
  return typeof v === "string" && (COLUMN_KINDS as readonly string[]).includes(v);
}

/** A spec's column kinds as a map for building SQL (their names were checked against the table where the spec was declared). */
function kindsOf(kinds: object): ReadonlyMap<string, ColumnKind> {
  return new Map(Object.entries(kinds).filter((e): e is [string, ColumnKind] => isColumnKind(e[1])));
}

export function sqlValue(kind: ColumnKind, v: unknown): unknown {
  return kind === "json" ? JSON.stringify(v ?? {}) : v;
}
const placeholder = (kind: ColumnKind, n: number) => (kind === "json" ? `$${n}::jsonb` : `$${n}`);

/** SQL predicate limiting rows to a tenant, with its parameter. */
export function tenantPredicate<K extends TableName>(rule: TenantRule<K>, tenantId: number | null, n: number, alias = ""): { sql: string; params: unknown[] } {
  if (tenantId === null || rule.kind === "none") return { sql: "TRUE", params: [] };
  if (rule.kind === "direct") return { sql: `${alias}tenant_id = $${n}`, params: [tenantId] };
  return { sql: `${alias}${rule.column} IN (SELECT id FROM ${rule.parent} WHERE tenant_id = $${n})`, params: [tenantId] };
}

/** The tenant owning a row (via its parent cluster when needed); null for global rows. */
export async function tenantOfRow<K extends TableName>(q: Queryable, rule: TenantRule<K>, row: Tables[K]): Promise<number | null> {
  if (rule.kind === "none") return null;
  if (rule.kind === "direct") return "tenant_id" in row && typeof row.tenant_id === "number" ? row.tenant_id : null;
  const [parent] = await q.query<{ tenant_id: number }>(`SELECT tenant_id FROM ${rule.parent} WHERE id = $1`, [row[rule.column]]);
  return parent?.tenant_id ?? null;
}

/** A row as the API returns it: Dragonfly's objects carry a soft-delete flag, never set here. */
export function withBase<T extends object>(row: T): T & { is_del: number } {
  return { ...row, is_del: 0 };
}

/** `present` of a spec whose response is the row as it is. */
export function presentRows<T extends object>(rows: T[]): Promise<Array<T & { is_del: number }>> {
  return Promise.resolve(rows.map(withBase));
}

export async function insertRow<K extends TableName>(q: Queryable, table: K, columns: ColumnKinds<K>, values: ColumnValues): Promise<Tables[K]> {
  const kinds = kindsOf(columns);
  const keys = Object.keys(values).filter((k) => kinds.has(k) || k === "tenant_id");
  const kindAt = keys.map((k) => kinds.get(k) ?? "int");
  const sql = `INSERT INTO ${table} (${keys.join(", ")}) VALUES (${keys.map((_, i) => placeholder(kindAt[i] ?? "text", i + 1)).join(", ")}) RETURNING *`;
  const [row] = await q.query<Tables[K]>(sql, keys.map((k, i) => sqlValue(kindAt[i] ?? "text", values[k])));
  if (!row) throw new Error(`INSERT INTO ${table} returned no row`);
  return row;
}

export async function updateRow<K extends TableName>(q: Queryable, table: K, columns: ColumnKinds<K>, id: number, values: ColumnValues): Promise<Tables[K] | undefined> {
  const kinds = kindsOf(columns);
  const keys = Object.keys(values).filter((k) => kinds.has(k) && values[k] !== undefined);
  const sets = keys.map((k, i) => `${k} = ${placeholder(kinds.get(k) ?? "text", i + 1)}`);
  sets.push("updated_at = now()");
  const [row] = await q.query<Tables[K]>(`UPDATE ${table} SET ${sets.join(", ")} WHERE id = $${keys.length + 1} RETURNING *`, [
    ...keys.map((k) => sqlValue(kinds.get(k) ?? "text", values[k])),
    id,
  ]);
  return row;
}

export function paginate(reply: Pick<FastifyReply, "header">, request: { url: string }, total: number, page: number, perPage: number): void {
  // Dragonfly's console reads the total from the Link header's last page; we send both.
  const last = Math.max(1, Math.ceil(total / perPage));
  const base = request.url.split("?")[0] ?? "";
  const link = (p: number, rel: string) => `<${base}?page=${p}&per_page=${perPage}>;rel=${rel}`;
  const links = [link(1, "first"), link(last, "last")];
  if (page > 1) links.push(link(page - 1, "prev"));
  if (page < last) links.push(link(page + 1, "next"));
  void reply.header("Link", links.join(",")).header("X-Total-Count", String(total));
}

/** The page a list route's query string asks for (schemas.ts Page: ajv filled in the defaults). */
function pageOf(query: RequestObject): { page: number; perPage: number } {
  return { page: typeof query.page === "number" ? query.page : 1, perPage: typeof query.per_page === "number" ? query.per_page : 10 };
}

/**
 * One page of a table for a list route: equality filters taken from the query string (empty
 * values ignored), the caller's tenant unless root, the total in the paging headers.
 */
export async function listPage<K extends TableName>(
  q: Queryable,
  request: { url: string; query: RequestObject },
  reply: Pick<FastifyReply, "header">,
  p: Principal,
  table: K,
  filterKeys: ReadonlyArray<Column<K>>,
  order: "id" | "id DESC",
): Promise<Array<Tables[K]>> {
  const { query } = request;
  const { page, perPage } = pageOf(query);
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
  const rows = await q.query<Tables[K]>(`SELECT * FROM ${table} ${cond} ORDER BY ${order} LIMIT ${perPage} OFFSET ${(page - 1) * perPage}`, params);
  paginate(reply, request, count?.n ?? 0, page, perPage);
  return rows;
}

export async function loadScoped<K extends ObjectTable>(ctx: RouteContext, spec: { table: K; tenant: TenantRule<K>; what: string }, id: number, p: Principal): Promise<Tables[K]> {
  const [row] = await ctx.db.query<Tables[K]>(`SELECT * FROM ${spec.table} WHERE id = $1`, [id]);
  if (!row) throw notFound(spec.what);
  const tenant = await tenantOfRow(ctx.db, spec.tenant, row);
  if (tenant !== null) assertTenant(p, tenant);
  return row;
}

/** Checks that a referenced cluster exists and is the caller's (400/403). */
export async function checkParent<K extends TableName>(q: Queryable, rule: TenantRule<K>, values: ColumnValues, p: Principal): Promise<void> {
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

/** The body fields a spec maps to columns. */
function columnValues(kinds: ReadonlyMap<string, ColumnKind>, body: RequestObject): ColumnValues {
  const values: ColumnValues = {};
  for (const k of kinds.keys()) if (body[k] !== undefined) values[k] = body[k];
  return values;
}

export function registerCrud<K extends ObjectTable, R extends TObject>(app: ManagerApp, ctx: RouteContext, spec: CrudSpec<K, R>, options: { skipCreate?: boolean } = {}): void {
  const pre = guard(ctx.auth, "jwt", { object: spec.object });
  const common = { tags: [spec.tag], security: JWT_SECURITY };
  const errors = { 400: Message, 401: Message, 403: Message, 404: Message };
  const columns = kindsOf(spec.columns);
  const filters = kindsOf(spec.filters);
  const filterSchema = Object.fromEntries(
    [...filters].map(([k, kind]) => [k, Type.Optional(kind === "int" ? Type.Integer() : kind === "bool" ? Type.Boolean() : Type.String())]),
  );
  const listQuery: TObject = Type.Object({ ...Page, ...filterSchema });
  // Every spec's schemas are objects: the routes are typed with that, the spec with its own.
  const response: TObject = spec.response;
  const create: TObject = spec.create;

  if (!options.skipCreate) app.post(
    spec.path,
    { preValidation: pre, schema: { ...common, summary: `create a ${spec.what}`, body: create, response: { 200: response, ...errors, 409: Message } } },
    async (request) => {
      const p = principalOf(request);
      const values = columnValues(columns, request.body);
      if (spec.tenant.kind === "direct") values.tenant_id = tenantForCreate(p, request.body.tenant_id);
      await checkParent(ctx.db, spec.tenant, values, p);
      if (spec.prepare) await spec.prepare(values, p, ctx.db, true);
      const row = await ctx.db.transaction(async (tx) => {
        const r = await insertRow(tx, spec.table, spec.columns, values);
        if (spec.after) await spec.after(r, request.body, p, tx);
        return r;
      });
      const [out] = await spec.present([row], ctx.db);
      return out;
    },
  );

  app.get(
    spec.path,
    { preValidation: pre, schema: { ...common, summary: `list ${spec.what}s`, querystring: listQuery, response: { 200: Type.Array(response), ...errors } } },
    async (request, reply) => {
      const p = principalOf(request);
      const query = request.query;
      const { page, perPage } = pageOf(query);
      const where: string[] = [];
      const params: unknown[] = [];
      for (const k of filters.keys()) {
        if (query[k] === undefined || query[k] === "") continue;
        params.push(query[k]);
        where.push(`${k} = $${params.length}`);
      }
      const t = tenantPredicate(spec.tenant, tenantFilter(p), params.length + 1);
      where.push(t.sql);
      params.push(...t.params);
      const cond = where.join(" AND ");
      const [count] = await ctx.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${spec.table} WHERE ${cond}`, params);
      const rows = await ctx.db.query<Tables[K]>(`SELECT * FROM ${spec.table} WHERE ${cond} ORDER BY id LIMIT ${perPage} OFFSET ${(page - 1) * perPage}`, params);
      paginate(reply, request, count?.n ?? 0, page, perPage);
      return spec.present(rows, ctx.db);
    },
  );

  app.get(
    `${spec.path}/:id`,
    { preValidation: pre, schema: { ...common, summary: `get a ${spec.what}`, params: IdParams, response: { 200: response, ...errors } } },
    async (request) => {
      const row = await loadScoped(ctx, spec, request.params.id, principalOf(request));
      const [out] = await spec.present([row], ctx.db);
      return out;
    },
  );

  const update: TObject | undefined = spec.update;
  if (update) {
    app.patch(
      `${spec.path}/:id`,
      { preValidation: pre, schema: { ...common, summary: `update a ${spec.what}`, params: IdParams, body: update, response: { 200: response, ...errors, 409: Message } } },
      async (request) => {
        const p = principalOf(request);
        const id = request.params.id;
        await loadScoped(ctx, spec, id, p);
        const values = columnValues(columns, request.body);
        await checkParent(ctx.db, spec.tenant, values, p);
        if (spec.prepare) await spec.prepare(values, p, ctx.db, false);
        const row = await ctx.db.transaction(async (tx) => {
          const r = await updateRow(tx, spec.table, spec.columns, id, values);
          if (!r) throw notFound(spec.what);
          if (spec.after) await spec.after(r, request.body, p, tx);
          return r;
        });
        const [out] = await spec.present([row], ctx.db);
        return out;
      },
    );
  }

  app.delete(
    `${spec.path}/:id`,
    { preValidation: pre, schema: { ...common, summary: `delete a ${spec.what}`, params: IdParams, response: { 200: Type.Object({}), ...errors } } },
    async (request) => {
      const id = request.params.id;
      await loadScoped(ctx, spec, id, principalOf(request));
      await ctx.db.query(`DELETE FROM ${spec.table} WHERE id = $1`, [id]);
      return {};
    },
  );
}
