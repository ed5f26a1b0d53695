// The composite "cluster" of Dragonfly's console and open API: one scheduler cluster plus the
// seed peer cluster that serves it, created, changed and deleted together. Served under
// /api/v1/clusters (JWT) and /oapi/v1/clusters (personal access token, scope `cluster`).
import { Type } from "@sinclair/typebox";
import type { preValidationAsyncHookHandler } from "fastify";
import type { Queryable } from "../db/database.js";
import type { SchedulerClusterRow, SeedPeerClusterRow } from "../db/rows.js";
import { assertTenant, guard, principalOf, tenantFilter } from "../auth/principal.js";
import { notFound } from "../errors.js";
import * as S from "../schemas.js";
import { JWT_SECURITY, PAT_SECURITY, type ManagerApp, type RouteContext } from "./context.js";
import { insertRow, paginate, tenantForCreate, updateRow, type ColumnKinds } from "./crud.js";
import { checkScopes } from "./resources.js";

const SC_COLUMNS: ColumnKinds<"scheduler_clusters"> = { name: "text", bio: "text", config: "json", client_config: "json", seed_client_config: "json", scopes: "json", is_default: "bool" };
const SPC_COLUMNS: ColumnKinds<"seed_peer_clusters"> = { name: "text", bio: "text", config: "json" };

/** A scheduler cluster with the first seed peer cluster serving it (SELECT below). */
type ClusterRow = SchedulerClusterRow & { spc_id: number | null; spc_config: SeedPeerClusterRow["config"] | null };

const SELECT = `SELECT sc.*, spc.id AS spc_id, spc.config AS spc_config
  FROM scheduler_clusters sc
  LEFT JOIN LATERAL (
    SELECT s.id, s.config FROM seed_peer_cluster_scheduler_clusters l JOIN seed_peer_clusters s ON s.id = l.seed_peer_cluster_id
    WHERE l.scheduler_cluster_id = sc.id ORDER BY s.id LIMIT 1
  ) spc ON TRUE`;

function toCluster(row: ClusterRow) {
  return {
    id: row.id,
    name: row.name,
    bio: row.bio,
    scopes: row.scopes,
    scheduler_cluster_id: row.id,
    seed_peer_cluster_id: row.spc_id ?? 0,
    scheduler_cluster_config: row.config,
    seed_peer_cluster_config: row.spc_config ?? {},
    peer_cluster_config: row.client_config,
    created_at: row.created_at,
    updated_at: row.updated_at,
    is_default: row.is_default,
    tenant_id: row.tenant_id,
  };
}

async function loadCluster(q: Queryable, id: number): Promise<ClusterRow> {
  const [row] = await q.query<ClusterRow>(`${SELECT} WHERE sc.id = $1`, [id]);
  if (!row) throw notFound("cluster");
  return row;
}

export function registerClusters(app: ManagerApp, ctx: RouteContext, prefix: "/api/v1" | "/oapi/v1"): void {
  const open = prefix === "/oapi/v1";
  const pre: preValidationAsyncHookHandler = guard(ctx.auth, open ? "pat" : "jwt", { object: "clusters", scope: "cluster" });
  const common = { tags: [open ? "open api" : "clusters"], security: open ? PAT_SECURITY : JWT_SECURITY };
  const errors = { 400: S.Message, 401: S.Message, 403: S.Message, 404: S.Message };
  const path = `${prefix}/clusters`;

  app.post(path, { preValidation: pre, schema: { ...common, summary: "create a cluster", body: S.CreateCluster, response: { 200: S.Cluster, ...errors, 409: S.Message } } }, async (request) => {
    const p = principalOf(request);
    const body = request.body;
    checkScopes(body.scopes, "body.scopes");
    const tenantId = tenantForCreate(p, body.tenant_id);
    const id = await ctx.db.transaction(async (tx) => {
      const sc = await insertRow(tx, "scheduler_clusters", SC_COLUMNS, {
        tenant_id: tenantId,
        name: body.name,
        bio: body.bio ?? "",
        config: body.scheduler_cluster_config,
        client_config: body.peer_cluster_config,
        seed_client_config: {},
        scopes: body.scopes ?? {},
        is_default: body.is_default ?? false,
      });
      const spc = await insertRow(tx, "seed_peer_clusters", SPC_COLUMNS, { tenant_id: tenantId, name: body.name, bio: body.bio ?? "", config: body.seed_peer_cluster_config });
      await tx.query("INSERT INTO seed_peer_cluster_scheduler_clusters (seed_peer_cluster_id, scheduler_cluster_id) VALUES ($1, $2)", [spc.id, sc.id]);
      return sc.id;
    });
    return toCluster(await loadCluster(ctx.db, id));
  });

  app.get(
    path,
    { preValidation: pre, schema: { ...common, summary: "list clusters", querystring: Type.Object({ ...S.Page, name: Type.Optional(Type.String()) }), response: { 200: Type.Array(S.Cluster), ...errors } } },
    async (request, reply) => {
      const p = principalOf(request);
      const q = request.query;
      const page = q.page ?? 1;
      const perPage = q.per_page ?? 10;
      const where: string[] = [];
      const params: unknown[] = [];
      if (q.name) {
        params.push(q.name);
        where.push(`sc.name = $${params.length}`);
      }
      const tenant = tenantFilter(p);
      if (tenant !== null) {
        params.push(tenant);
        where.push(`sc.tenant_id = $${params.length}`);
      }
      const cond = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
      const [count] = await ctx.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM scheduler_clusters sc ${cond}`, params);
      const rows = await ctx.db.query<ClusterRow>(`${SELECT} ${cond} ORDER BY sc.id LIMIT ${perPage} OFFSET ${(page - 1) * perPage}`, params);
      paginate(reply, request, count?.n ?? 0, page, perPage);
      return rows.map(toCluster);
    },
  );

  app.get(`${path}/:id`, { preValidation: pre, schema: { ...common, summary: "get a cluster", params: S.IdParams, response: { 200: S.Cluster, ...errors } } }, async (request) => {
    const row = await loadCluster(ctx.db, request.params.id);
    assertTenant(principalOf(request), row.tenant_id);
    return toCluster(row);
  });

  app.patch(
    `${path}/:id`,
    { preValidation: pre, schema: { ...common, summary: "update a cluster", params: S.IdParams, body: S.UpdateCluster, response: { 200: S.Cluster, ...errors, 409: S.Message } } },
    async (request) => {
      const id = request.params.id;
      const row = await loadCluster(ctx.db, id);
      assertTenant(principalOf(request), row.tenant_id);
      const body = request.body;
      checkScopes(body.scopes, "body.scopes");
      await ctx.db.transaction(async (tx) => {
        await updateRow(tx, "scheduler_clusters", SC_COLUMNS, id, {
          name: body.name,
          bio: body.bio,
          config: body.scheduler_cluster_config,
          client_config: body.peer_cluster_config,
          scopes: body.scopes,
          is_default: body.is_default,
        });
        if (typeof row.spc_id === "number") await updateRow(tx, "seed_peer_clusters", SPC_COLUMNS, row.spc_id, { name: body.name, bio: body.bio, config: body.seed_peer_cluster_config });
      });
      return toCluster(await loadCluster(ctx.db, id));
    },
  );

  app.delete(`${path}/:id`, { preValidation: pre, schema: { ...common, summary: "delete a cluster", params: S.IdParams, response: { 200: Type.Object({}), ...errors } } }, async (request) => {
    const id = request.params.id;
    const row = await loadCluster(ctx.db, id);
    assertTenant(principalOf(request), row.tenant_id);
    await ctx.db.transaction(async (tx) => {
      await tx.query("DELETE FROM scheduler_clusters WHERE id = $1", [id]);
      // The seed peer cluster goes with it unless another scheduler cluster still uses it.
      if (typeof row.spc_id === "number") {
        await tx.query("DELETE FROM seed_peer_clusters WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM seed_peer_cluster_scheduler_clusters WHERE seed_peer_cluster_id = $1)", [row.spc_id]);
      }
    });
    return {};
  });
}
