// The row-shaped resources of /api/v1, declared as CRUD specs, plus Dragonfly's linking routes
// (PUT scheduler-clusters/:id/schedulers/:scheduler_id and friends).
import { isIP } from "node:net";
import { Type, type TInteger } from "@sinclair/typebox";
import type { Queryable } from "../db/database.js";
import type { SchedulerClusterRow } from "../db/rows.js";
import { guard, principalOf, type Principal } from "../auth/principal.js";
import { badRequest } from "../errors.js";
import * as S from "../schemas.js";
import { JWT_SECURITY, type ManagerApp, type RouteContext } from "./context.js";
import { loadScoped, presentRows, registerCrud, withBase, type CrudSpec } from "./crud.js";

function checkRegexes(list: unknown, field: (i: number) => string): void {
  if (!Array.isArray(list)) return;
  list.forEach((r, i) => {
    try {
      new RegExp(String(r));
    } catch {
      throw badRequest(field(i), `invalid regular expression "${String(r)}"`);
    }
  });
}

export function checkScopes(scopes: unknown, field: string): void {
  if (!scopes || typeof scopes !== "object") return;
  const s = scopes as { cidrs?: unknown; hostnames?: unknown };
  if (Array.isArray(s.cidrs)) {
    s.cidrs.forEach((c, i) => {
      const [addr, bits, extra] = String(c).split("/");
      const family = isIP(addr ?? "");
      const n = Number(bits);
      if (!family || extra !== undefined || bits === undefined || !/^\d+$/.test(bits) || n > (family === 4 ? 32 : 128)) {
        throw badRequest(`${field}.cidrs.${i}`, `invalid CIDR "${String(c)}"`);
      }
    });
  }
  checkRegexes(s.hostnames, (i) => `${field}.hostnames.${i}`);
}

/** Scheduler clusters with the seed peer clusters that serve them. */
async function withSeedPeerClusters(rows: SchedulerClusterRow[], q: Queryable) {
  const out = [];
  for (const row of rows) {
    const links = await q.query<{ id: number }>("SELECT seed_peer_cluster_id AS id FROM seed_peer_cluster_scheduler_clusters WHERE scheduler_cluster_id = $1 ORDER BY 1", [row.id]);
    out.push({ ...withBase(row), seed_peer_cluster_ids: links.map((l) => l.id) });
  }
  return out;
}

/** The URL regexes of an application's priority (validated against S.Priority). */
function priorityRegexes(priority: unknown): unknown[] | undefined {
  if (!priority || typeof priority !== "object" || !("urls" in priority) || !Array.isArray(priority.urls)) return undefined;
  return priority.urls.map((u: unknown) => (u && typeof u === "object" && "regex" in u ? u.regex : undefined));
}

async function linkSeedPeerCluster(q: Queryable, schedulerClusterId: number, seedPeerClusterId: unknown, p: Principal): Promise<void> {
  if (typeof seedPeerClusterId !== "number" || seedPeerClusterId === 0) return;
  const [spc] = await q.query<{ tenant_id: number }>("SELECT tenant_id FROM seed_peer_clusters WHERE id = $1", [seedPeerClusterId]);
  if (!spc) throw badRequest("body.seed_peer_cluster_id", `seed peer cluster ${seedPeerClusterId} does not exist`);
  if (!p.isRoot && spc.tenant_id !== p.tenantId) throw badRequest("body.seed_peer_cluster_id", "seed peer cluster belongs to another tenant");
  await q.query("DELETE FROM seed_peer_cluster_scheduler_clusters WHERE scheduler_cluster_id = $1", [schedulerClusterId]);
  await q.query("INSERT INTO seed_peer_cluster_scheduler_clusters (seed_peer_cluster_id, scheduler_cluster_id) VALUES ($1, $2)", [seedPeerClusterId, schedulerClusterId]);
}

export const SCHEDULER_CLUSTERS: CrudSpec<"scheduler_clusters", typeof S.SchedulerCluster> = {
  path: "/api/v1/scheduler-clusters",
  object: "scheduler-clusters",
  table: "scheduler_clusters",
  what: "scheduler cluster",
  tag: "scheduler-clusters",
  columns: { name: "text", bio: "text", config: "json", client_config: "json", seed_client_config: "json", scopes: "json", is_default: "bool" },
  tenant: { kind: "direct" },
  filters: { name: "text" },
  create: S.CreateSchedulerCluster,
  update: S.UpdateSchedulerCluster,
  response: S.SchedulerCluster,
  prepare: (v) => checkScopes(v.scopes, "body.scopes"),
  present: withSeedPeerClusters,
  after: (row, body, p, q) => linkSeedPeerCluster(q, row.id, body.seed_peer_cluster_id, p),
};

export const SEED_PEER_CLUSTERS: CrudSpec<"seed_peer_clusters", typeof S.SeedPeerCluster> = {
  path: "/api/v1/seed-peer-clusters",
  object: "seed-peer-clusters",
  table: "seed_peer_clusters",
  what: "seed peer cluster",
  tag: "seed-peer-clusters",
  columns: { name: "text", bio: "text", config: "json" },
  tenant: { kind: "direct" },
  filters: { name: "text" },
  create: S.CreateSeedPeerCluster,
  update: S.UpdateSeedPeerCluster,
  response: S.SeedPeerCluster,
  present: presentRows,
};

export const SCHEDULERS: CrudSpec<"schedulers", typeof S.Scheduler> = {
  path: "/api/v1/schedulers",
  object: "schedulers",
  table: "schedulers",
  what: "scheduler",
  tag: "schedulers",
  columns: { config: "json", host_name: "text", idc: "text", location: "text", ip: "text", port: "int", features: "json", scheduler_cluster_id: "int" },
  tenant: { kind: "via", column: "scheduler_cluster_id", parent: "scheduler_clusters", what: "scheduler cluster" },
  filters: { host_name: "text", idc: "text", location: "text", ip: "text", state: "text", scheduler_cluster_id: "int" },
  create: S.CreateScheduler,
  update: S.UpdateScheduler,
  response: S.Scheduler,
  present: presentRows,
};

export const SEED_PEERS: CrudSpec<"seed_peers", typeof S.SeedPeer> = {
  path: "/api/v1/seed-peers",
  object: "seed-peers",
  table: "seed_peers",
  what: "seed peer",
  tag: "seed-peers",
  columns: { host_name: "text", type: "text", idc: "text", location: "text", ip: "text", port: "int", download_port: "int", object_storage_port: "int", seed_peer_cluster_id: "int" },
  tenant: { kind: "via", column: "seed_peer_cluster_id", parent: "seed_peer_clusters", what: "seed peer cluster" },
  filters: { host_name: "text", type: "text", idc: "text", location: "text", ip: "text", port: "int", download_port: "int", state: "text", seed_peer_cluster_id: "int" },
  create: S.CreateSeedPeer,
  update: S.UpdateSeedPeer,
  response: S.SeedPeer,
  present: presentRows,
};

const PEER_TEXT = ["host_name", "type", "idc", "location", "ip", "state", "os", "platform", "platform_family", "platform_version", "kernel_version", "git_version", "git_commit", "build_platform"] as const;
export const PEERS: CrudSpec<"peers", typeof S.Peer> = {
  path: "/api/v1/peers",
  object: "peers",
  table: "peers",
  what: "peer",
  tag: "peers",
  columns: { ...Object.fromEntries(PEER_TEXT.map((k) => [k, "text" as const])), port: "int", download_port: "int", proxy_port: "int", object_storage_port: "int", scheduler_cluster_id: "int" },
  tenant: { kind: "via", column: "scheduler_cluster_id", parent: "scheduler_clusters", what: "scheduler cluster" },
  filters: { host_name: "text", type: "text", idc: "text", location: "text", ip: "text", state: "text", os: "text", git_version: "text", git_commit: "text", scheduler_cluster_id: "int" },
  create: S.CreatePeer,
  response: S.Peer,
  present: presentRows,
};

export const APPLICATIONS: CrudSpec<"applications", typeof S.Application> = {
  path: "/api/v1/applications",
  object: "applications",
  table: "applications",
  what: "application",
  tag: "applications",
  columns: { name: "text", url: "text", bio: "text", priority: "json", user_id: "int" },
  tenant: { kind: "direct" },
  filters: { name: "text" },
  create: S.CreateApplication,
  update: S.UpdateApplication,
  response: S.Application,
  present: presentRows,
  prepare: (v, p) => {
    checkRegexes(priorityRegexes(v.priority), (i) => `body.priority.urls.${i}.regex`);
    // The owner is whoever is signed in; Dragonfly's client-sent user_id is not trusted.
    v.user_id = p.userId;
  },
};

export const CONFIGS: CrudSpec<"configs", typeof S.Config> = {
  path: "/api/v1/configs",
  object: "configs",
  table: "configs",
  what: "config",
  tag: "configs",
  columns: { name: "text", value: "text", bio: "text", user_id: "int" },
  tenant: { kind: "none" },
  filters: { name: "text", value: "text", user_id: "int" },
  create: S.CreateConfig,
  update: S.UpdateConfig,
  response: S.Config,
  present: presentRows,
  prepare: (v, p) => {
    v.user_id = p.userId;
  },
};

export function registerResources(app: ManagerApp, ctx: RouteContext): void {
  registerCrud(app, ctx, SCHEDULER_CLUSTERS);
  registerCrud(app, ctx, SEED_PEER_CLUSTERS);
  registerCrud(app, ctx, SCHEDULERS);
  registerCrud(app, ctx, SEED_PEERS);
  registerCrud(app, ctx, PEERS);
  registerCrud(app, ctx, APPLICATIONS);
  registerCrud(app, ctx, CONFIGS);

  const errors = { 400: S.Message, 401: S.Message, 403: S.Message, 404: S.Message };
  const link = (path: string, object: string, tag: string, params: Record<string, TInteger>, summary: string, run: (ids: Record<string, number>, p: Principal) => Promise<void>) =>
    app.put(
      path,
      { preValidation: guard(ctx.auth, "jwt", { object }), schema: { tags: [tag], security: JWT_SECURITY, summary, params: Type.Object(params), response: { 200: Type.Object({}), ...errors } } },
      async (request) => {
        await run(request.params, principalOf(request));
        return {};
      },
    );

  link("/api/v1/scheduler-clusters/:id/schedulers/:scheduler_id", "scheduler-clusters", "scheduler-clusters", { id: S.Id, scheduler_id: S.Id }, "move a scheduler into a scheduler cluster", async (ids, p) => {
    await loadScoped(ctx, SCHEDULER_CLUSTERS, ids.id ?? 0, p);
    await loadScoped(ctx, SCHEDULERS, ids.scheduler_id ?? 0, p);
    await ctx.db.query("UPDATE schedulers SET scheduler_cluster_id = $1, updated_at = now() WHERE id = $2", [ids.id, ids.scheduler_id]);
  });
  link("/api/v1/seed-peer-clusters/:id/seed-peers/:seed_peer_id", "seed-peer-clusters", "seed-peer-clusters", { id: S.Id, seed_peer_id: S.Id }, "move a seed peer into a seed peer cluster", async (ids, p) => {
    await loadScoped(ctx, SEED_PEER_CLUSTERS, ids.id ?? 0, p);
    await loadScoped(ctx, SEED_PEERS, ids.seed_peer_id ?? 0, p);
    await ctx.db.query("UPDATE seed_peers SET seed_peer_cluster_id = $1, updated_at = now() WHERE id = $2", [ids.id, ids.seed_peer_id]);
  });
  link(
    "/api/v1/seed-peer-clusters/:id/scheduler-clusters/:scheduler_cluster_id",
    "seed-peer-clusters",
    "seed-peer-clusters",
    { id: S.Id, scheduler_cluster_id: S.Id },
    "serve a scheduler cluster from a seed peer cluster",
    async (ids, p) => {
      await loadScoped(ctx, SEED_PEER_CLUSTERS, ids.id ?? 0, p);
      await loadScoped(ctx, SCHEDULER_CLUSTERS, ids.scheduler_cluster_id ?? 0, p);
      await ctx.db.query("INSERT INTO seed_peer_cluster_scheduler_clusters (seed_peer_cluster_id, scheduler_cluster_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", [ids.id, ids.scheduler_cluster_id]);
    },
  );

  app.get(
    "/api/v1/scheduler-features",
    { preValidation: guard(ctx.auth, "jwt", { object: "scheduler-features" }), schema: { tags: ["schedulers"], security: JWT_SECURITY, summary: "features a scheduler can advertise", response: { 200: Type.Array(Type.String()), 401: S.Message, 403: S.Message } } },
    () => ["schedule", "preheat"],
  );
}
