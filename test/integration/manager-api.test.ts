// Every /api/v1 and /oapi/v1 route, against PGlite and (when DATABASE_URL is set) PostgreSQL:
// 401 without credentials, 403 for the wrong role / scope / tenant, 400 naming the field for
// bad input — driven by one route table that is checked against the routes the app registers.
// Response bodies are untyped JSON checked by value, hence the no-unsafe-* exemptions.
/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-explicit-any */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { buildManagerApp, registeredRoutes } from "../../src/manager/app.js";
import { TenantKeys } from "../../src/manager/tenant-keys.js";
import { ensureRootUser, INITIAL_PASSWORD_FILE } from "../../src/manager/auth/bootstrap.js";
import { JwtService, loadSigningKey } from "../../src/manager/auth/tokens.js";
import type { Database } from "../../src/manager/db/database.js";
import { JobRateLimiter } from "../../src/manager/jobs/rate-limiter.js";
import { databaseVariants } from "../../src/manager/testing.js";

const { variants, skipped } = databaseVariants();
if (skipped) {
  console.warn(`manager-api: ${skipped}`);
  describe("manager API on PostgreSQL", () => it.skip(skipped, () => undefined));
}

const ROOT_PASSWORD = "root-pass-123";

type Method = "GET" | "POST" | "PATCH" | "PUT" | "DELETE";
interface RouteCase {
  method: Method;
  /** Route pattern as registered. */
  route: string;
  /** Concrete URL (ids of objects owned by tenant 1). */
  url: () => string;
  /** `pat:job` / `pat:cluster` for the open API; otherwise JWT. */
  auth?: "jwt" | "pat:job" | "pat:cluster";
  /** A body that fails validation, and the field the 400 must name. */
  bad?: { body?: unknown; url?: () => string; field: string };
  /** Object belongs to tenant 1: a tenant-2 administrator must get 403. */
  tenantScoped?: boolean;
  /** Callers without any permission still succeed (e.g. sign-out). */
  selfService?: boolean;
}

describe.each(variants)("manager API on $name", (variant) => {
  let db: Database;
  let cleanup: () => Promise<void>;
  let app: FastifyInstance;
  let dataDir: string;
  const tokens = {} as Record<"root" | "guest" | "nobody" | "tadmin" | "patAll" | "patJob" | "patCluster" | "patTenant2", string>;
  const ids: Record<string, number> = {};

  const call = (method: Method, url: string, opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) =>
    app.inject({
      method,
      url,
      headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...opts.headers },
      ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
    });
  const ok = async (method: Method, url: string, token: string, body?: unknown) => {
    const r = await call(method, url, { token, body });
    if (r.statusCode !== 200) throw new Error(`${method} ${url} → ${r.statusCode} ${r.body}`);
    return r.json<any>();
  };
  const signIn = async (name: string, password: string) => {
    const r = await call("POST", "/api/v1/users/signin", { body: { name, password } });
    expect(r.statusCode, r.body).toBe(200);
    return r.json<{ token: string }>().token;
  };

  beforeAll(async () => {
    const opened = await variant.open();
    db = opened.db;
    cleanup = () => opened.cleanup();
    dataDir = mkdtempSync(join(tmpdir(), "manager-api-"));
    await ensureRootUser(db, dataDir, silentLogger(), { DRAGONFLY_INITIAL_ROOT_PASSWORD: ROOT_PASSWORD });
    const jwt = new JwtService(await loadSigningKey(db), { realm: "Dragonfly", timeoutMs: 3_600_000, maxRefreshMs: 7_200_000 });
    app = await buildManagerApp({ db, jwt, limiter: new JobRateLimiter(), tenantKeys: new TenantKeys(db, randomBytes(32)) });
    const root = await signIn("root", ROOT_PASSWORD);
    tokens.root = root;

    // Tenant 2 and its administrator (a custom role with every permission, but not root).
    ids.tenant2 = (await ok("POST", "/api/v1/tenants", root, { name: "other" })).id;
    await ok("POST", "/api/v1/roles", root, { role: "tadmin", permissions: [{ object: "*", action: "*" }] });
    await ok("POST", "/api/v1/roles", root, { role: "nobody", permissions: [] });
    await ok("POST", "/api/v1/roles", root, { role: "viewer", permissions: [{ object: "jobs", action: "read" }] });
    ids.guest = (await ok("POST", "/api/v1/users", root, { name: "guest1", password: "guest-pass-1", email: "g@example.com" })).id;
    ids.nobody = (await ok("POST", "/api/v1/users", root, { name: "nobody1", password: "nobody-pass", email: "n@example.com", roles: ["nobody"] })).id;
    ids.tadmin = (await ok("POST", "/api/v1/users", root, { name: "tadmin2", password: "tadmin-pass", email: "t@example.com", roles: ["tadmin"], tenant_id: ids.tenant2 })).id;
    tokens.guest = await signIn("guest1", "guest-pass-1");
    tokens.nobody = await signIn("nobody1", "nobody-pass");
    tokens.tadmin = await signIn("tadmin2", "tadmin-pass");

    // Objects of tenant 1.
    const cluster = await ok("POST", "/api/v1/clusters", root, {
      name: "c-one",
      scheduler_cluster_config: { candidate_parent_limit: 4, filter_parent_limit: 40, job_rate_limit: 3 },
      seed_peer_cluster_config: { load_limit: 100 },
      peer_cluster_config: { load_limit: 50 },
    });
    ids.cluster = cluster.id;
    ids.spc = cluster.seed_peer_cluster_id;
    ids.scheduler = (await ok("POST", "/api/v1/schedulers", root, { host_name: "sched-1", ip: "10.0.0.1", port: 8002, scheduler_cluster_id: ids.cluster })).id;
    ids.seedPeer = (await ok("POST", "/api/v1/seed-peers", root, { host_name: "seed-1", type: "super", ip: "10.0.0.2", port: 4000, download_port: 4001, seed_peer_cluster_id: ids.spc })).id;
    ids.peer = (await ok("POST", "/api/v1/peers", root, { host_name: "peer-1", type: "normal", ip: "10.0.0.3", port: 4000, download_port: 4001, proxy_port: 4002, scheduler_cluster_id: ids.cluster })).id;
    ids.application = (await ok("POST", "/api/v1/applications", root, { name: "app1", url: "https://example.com", priority: { value: 1, urls: [{ regex: "^https://", value: 2 }] } })).id;
    ids.config = (await ok("POST", "/api/v1/configs", root, { name: "cfg1", value: "v" })).id;
    const pat = await ok("POST", "/api/v1/personal-access-tokens", root, { name: "root-all", expired_at: new Date(Date.now() + 86_400_000).toISOString() });
    ids.pat = pat.id;
    tokens.patAll = pat.token;
    tokens.patJob = (await ok("POST", "/api/v1/personal-access-tokens", root, { name: "root-job", scopes: ["job"], expired_at: new Date(Date.now() + 86_400_000).toISOString() })).token;
    tokens.patCluster = (await ok("POST", "/api/v1/personal-access-tokens", root, { name: "root-cluster", scopes: ["cluster"], expired_at: new Date(Date.now() + 86_400_000).toISOString() })).token;
    tokens.patTenant2 = (await ok("POST", "/api/v1/personal-access-tokens", tokens.tadmin, { name: "t2-all", expired_at: new Date(Date.now() + 86_400_000).toISOString() })).token;
    ids.webhook = (await ok("POST", "/api/v1/webhooks", root, { name: "hook1", url: "http://10.0.0.9/hook", event_types: ["job.created"], secret: "hook-secret-1" })).id;
    ids.job = (await ok("POST", "/api/v1/jobs", root, { type: "sync_peers", scheduler_cluster_ids: [ids.cluster] })).id;
    // No daemon is connected to this app: the command fails at once, saying so.
    ids.command = (await ok("POST", "/api/v1/commands", root, { type: "gc", host_id: "10.0.0.3-peer-1" })).id;
    ids.delivery = (await db.query<{ id: number }>("SELECT id FROM webhook_deliveries WHERE webhook_id = $1", [ids.webhook]))[0]?.id ?? 0;
    expect(ids.delivery, "the job.created delivery of hook1").toBeGreaterThan(0);
  });

  afterAll(async () => {
    await app?.close();
    await cleanup?.();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const id = (k: string) => String(ids[k]);
  const ROUTES: RouteCase[] = [
    { method: "POST", route: "/api/v1/users/signout", url: () => "/api/v1/users/signout", selfService: true },
    { method: "POST", route: "/api/v1/users", url: () => "/api/v1/users", bad: { body: { name: "ab", password: "12345678", email: "a@example.com" }, field: "body.name" } },
    { method: "GET", route: "/api/v1/users", url: () => "/api/v1/users", bad: { url: () => "/api/v1/users?page=0", field: "querystring.page" } },
    { method: "GET", route: "/api/v1/users/:id", url: () => `/api/v1/users/${id("guest")}`, tenantScoped: true, bad: { url: () => "/api/v1/users/abc", field: "params.id" } },
    { method: "PATCH", route: "/api/v1/users/:id", url: () => `/api/v1/users/${id("guest")}`, tenantScoped: true, bad: { body: { email: "not-an-email" }, field: "body.email" } },
    { method: "POST", route: "/api/v1/users/:id/reset_password", url: () => `/api/v1/users/${id("guest")}/reset_password`, tenantScoped: true, bad: { body: { new_password: "short" }, field: "body.new_password" } },
    { method: "GET", route: "/api/v1/users/:id/roles", url: () => `/api/v1/users/${id("guest")}/roles`, tenantScoped: true },
    { method: "PUT", route: "/api/v1/users/:id/roles/:role", url: () => `/api/v1/users/${id("guest")}/roles/viewer`, tenantScoped: true, bad: { url: () => "/api/v1/users/0/roles/viewer", field: "params.id" } },
    { method: "DELETE", route: "/api/v1/users/:id/roles/:role", url: () => `/api/v1/users/${id("guest")}/roles/viewer`, tenantScoped: true },
    { method: "POST", route: "/api/v1/roles", url: () => "/api/v1/roles", bad: { body: { role: "x", permissions: [{ object: "jobs", action: "write" }] }, field: "body.permissions.0.action" } },
    { method: "GET", route: "/api/v1/roles", url: () => "/api/v1/roles" },
    { method: "GET", route: "/api/v1/roles/:role", url: () => "/api/v1/roles/viewer" },
    { method: "DELETE", route: "/api/v1/roles/:role", url: () => "/api/v1/roles/viewer" },
    { method: "POST", route: "/api/v1/roles/:role/permissions", url: () => "/api/v1/roles/viewer/permissions", bad: { body: { object: "nope", action: "read" }, field: "body.object" } },
    { method: "DELETE", route: "/api/v1/roles/:role/permissions", url: () => "/api/v1/roles/viewer/permissions", bad: { body: { object: "jobs" }, field: "body.action" } },
    { method: "GET", route: "/api/v1/permissions", url: () => "/api/v1/permissions" },
    { method: "POST", route: "/api/v1/tenants", url: () => "/api/v1/tenants", bad: { body: { name: "bad name!" }, field: "body.name" } },
    { method: "GET", route: "/api/v1/tenants", url: () => "/api/v1/tenants" },
    { method: "POST", route: "/api/v1/tenants/:id/keys", url: () => "/api/v1/tenants/1/keys", bad: { url: () => "/api/v1/tenants/0/keys", field: "params.id" } },
    { method: "GET", route: "/api/v1/tenants/:id/keys", url: () => "/api/v1/tenants/1/keys", bad: { url: () => "/api/v1/tenants/x/keys", field: "params.id" } },
    { method: "POST", route: "/api/v1/personal-access-tokens", url: () => "/api/v1/personal-access-tokens", bad: { body: { name: "x", expired_at: "tomorrow" }, field: "body.expired_at" } },
    { method: "GET", route: "/api/v1/personal-access-tokens", url: () => "/api/v1/personal-access-tokens" },
    { method: "GET", route: "/api/v1/personal-access-tokens/:id", url: () => `/api/v1/personal-access-tokens/${id("pat")}`, tenantScoped: true },
    { method: "PATCH", route: "/api/v1/personal-access-tokens/:id", url: () => `/api/v1/personal-access-tokens/${id("pat")}`, tenantScoped: true, bad: { body: { state: "bogus" }, field: "body.state" } },
    { method: "DELETE", route: "/api/v1/personal-access-tokens/:id", url: () => `/api/v1/personal-access-tokens/${id("pat")}`, tenantScoped: true },
    ...crud("scheduler-clusters", "cluster", { body: { name: "x", config: { candidate_parent_limit: 50 }, client_config: {}, seed_client_config: {} }, field: "body.config.candidate_parent_limit" }, { body: { scopes: { cidrs: ["nope"] } }, field: "body.scopes.cidrs.0" }),
    { method: "PUT", route: "/api/v1/scheduler-clusters/:id/schedulers/:scheduler_id", url: () => `/api/v1/scheduler-clusters/${id("cluster")}/schedulers/${id("scheduler")}`, tenantScoped: true, bad: { url: () => `/api/v1/scheduler-clusters/${id("cluster")}/schedulers/x`, field: "params.scheduler_id" } },
    ...crud("seed-peer-clusters", "spc", { body: { name: "x", config: { load_limit: 0 } }, field: "body.config.load_limit" }, { body: { config: { load_limit: 60000 } }, field: "body.config.load_limit" }),
    { method: "PUT", route: "/api/v1/seed-peer-clusters/:id/seed-peers/:seed_peer_id", url: () => `/api/v1/seed-peer-clusters/${id("spc")}/seed-peers/${id("seedPeer")}`, tenantScoped: true },
    { method: "PUT", route: "/api/v1/seed-peer-clusters/:id/scheduler-clusters/:scheduler_cluster_id", url: () => `/api/v1/seed-peer-clusters/${id("spc")}/scheduler-clusters/${id("cluster")}`, tenantScoped: true },
    ...crud("schedulers", "scheduler", { body: { host_name: "h", ip: "10.1.1.1", port: 70000, scheduler_cluster_id: 1 }, field: "body.port" }, { body: { ip: "nope" }, field: "body.ip" }),
    { method: "GET", route: "/api/v1/scheduler-features", url: () => "/api/v1/scheduler-features" },
    ...crud("seed-peers", "seedPeer", { body: { host_name: "h", type: "normal", ip: "10.1.1.1", port: 4000, download_port: 4001, seed_peer_cluster_id: 1 }, field: "body.type" }, { body: { download_port: 0 }, field: "body.download_port" }),
    ...crud("peers", "peer", { body: { host_name: "h", type: "normal", ip: "10.1.1.1", port: 4000, download_port: 4001, scheduler_cluster_id: 1 }, field: "body.proxy_port" }),
    ...crud("applications", "application", { body: { name: "a", url: "u", priority: { value: 99 } }, field: "body.priority.value" }, { body: { priority: { value: 1, urls: [{ regex: "(", value: 1 }] } }, field: "body.priority.urls.0.regex" }),
    ...crud("configs", "config", { body: { name: "n" }, field: "body.value" }, { body: { value: "" }, field: "body.value" }, false),
    ...crud("clusters", "cluster", { body: { name: "x", scheduler_cluster_config: {}, seed_peer_cluster_config: {} }, field: "body.peer_cluster_config" }, { body: { scopes: { hostnames: ["("] } }, field: "body.scopes.hostnames.0" }),
    ...crud("jobs", "job", { body: { type: "preheat", args: { type: "file" } }, field: "body.args.url" }, { body: { bio: "x".repeat(2000) }, field: "body.bio" }),
    ...jobActions("/api/v1", "jwt"),
    ...crud("webhooks", "webhook", { body: { name: "w", url: "ftp://10.0.0.9/", event_types: ["job.created"], secret: "0123456789" }, field: "body.url" }, { body: { event_types: ["job.exploded"] }, field: "body.event_types.0" }),
    { method: "GET", route: "/api/v1/webhooks/:id/deliveries", url: () => `/api/v1/webhooks/${id("webhook")}/deliveries`, tenantScoped: true, bad: { url: () => `/api/v1/webhooks/${id("webhook")}/deliveries?state=BOGUS`, field: "querystring.state" } },
    { method: "GET", route: "/api/v1/webhooks/:id/deliveries/:delivery", url: () => `/api/v1/webhooks/${id("webhook")}/deliveries/${id("delivery")}`, tenantScoped: true, bad: { url: () => `/api/v1/webhooks/${id("webhook")}/deliveries/0`, field: "params.delivery" } },
    { method: "POST", route: "/api/v1/webhooks/:id/deliveries/:delivery/redeliver", url: () => `/api/v1/webhooks/${id("webhook")}/deliveries/${id("delivery")}/redeliver`, tenantScoped: true, bad: { url: () => `/api/v1/webhooks/${id("webhook")}/deliveries/abc/redeliver`, field: "params.delivery" } },
    { method: "POST", route: "/api/v1/commands", url: () => "/api/v1/commands", bad: { body: { type: "delete_task", host_id: "10.0.0.3-peer-1" }, field: "body.args.task_id" } },
    { method: "GET", route: "/api/v1/commands", url: () => "/api/v1/commands", bad: { url: () => "/api/v1/commands?state=BOGUS", field: "querystring.state" } },
    { method: "GET", route: "/api/v1/commands/hosts", url: () => "/api/v1/commands/hosts" },
    { method: "GET", route: "/api/v1/commands/:id", url: () => `/api/v1/commands/${id("command")}`, tenantScoped: true, bad: { url: () => "/api/v1/commands/0", field: "params.id" } },
    { method: "GET", route: "/api/v1/audits", url: () => "/api/v1/audits", bad: { url: () => "/api/v1/audits?actor_type=ROBOT", field: "querystring.actor_type" } },
    ...crud("clusters", "cluster", { body: { name: "x", scheduler_cluster_config: { filter_parent_limit: 5 }, seed_peer_cluster_config: {}, peer_cluster_config: {} }, field: "body.scheduler_cluster_config.filter_parent_limit" }, { body: { is_default: "maybe" }, field: "body.is_default" }, true, "/oapi/v1", "pat:cluster"),
    ...crud("jobs", "job", { body: { type: "preheat", args: { type: "image", url: "https://r.example.com/v2/a/b" } }, field: "body.args.url" }, { body: { bio: "x".repeat(2000) }, field: "body.bio" }, true, "/oapi/v1", "pat:job"),
    ...jobActions("/oapi/v1", "pat:job"),
  ];

  /** Cancel and retry of a job: POSTs on the job, RBAC and tenancy as creating one. */
  function jobActions(prefix: string, auth: RouteCase["auth"]): RouteCase[] {
    return (["cancel", "retry"] as const).map((action) => ({
      method: "POST",
      route: `${prefix}/jobs/:id/${action}`,
      url: () => `${prefix}/jobs/${id("job")}/${action}`,
      tenantScoped: true,
      bad: { url: () => `${prefix}/jobs/0/${action}`, field: "params.id" },
      auth,
    }));
  }

  function crud(path: string, key: string, badCreate: RouteCase["bad"], badUpdate?: RouteCase["bad"], tenantScoped = true, prefix = "/api/v1", auth: RouteCase["auth"] = "jwt"): RouteCase[] {
    const base = `${prefix}/${path}`;
    const cases: RouteCase[] = [
      { method: "POST", route: base, url: () => base, bad: badCreate, auth },
      { method: "GET", route: base, url: () => base, bad: { url: () => `${base}?per_page=0`, field: "querystring.per_page" }, auth },
      { method: "GET", route: `${base}/:id`, url: () => `${base}/${id(key)}`, tenantScoped, bad: { url: () => `${base}/0`, field: "params.id" }, auth },
      { method: "DELETE", route: `${base}/:id`, url: () => `${base}/${id(key)}`, tenantScoped, auth },
    ];
    if (badUpdate) cases.push({ method: "PATCH", route: `${base}/:id`, url: () => `${base}/${id(key)}`, tenantScoped, bad: badUpdate, auth });
    return cases;
  }

  const PUBLIC = new Set(["POST /api/v1/users/signin", "POST /api/v1/users/signup", "POST /api/v1/users/refresh_token", "GET /api/v1", "GET /oapi/v1"]);

  it("covers every registered API route in the table", () => {
    const registered = registeredRoutes(app)
      .filter((r) => r.url.startsWith("/api/v1") || r.url.startsWith("/oapi/v1"))
      .map((r) => `${r.method} ${r.url}`)
      .filter((r) => !PUBLIC.has(r));
    const table = new Set(ROUTES.map((r) => `${r.method} ${r.route}`));
    expect(registered.filter((r) => !table.has(r))).toEqual([]);
    expect([...table].filter((r) => !registered.includes(r))).toEqual([]);
  });

  it("answers 401 without credentials or with a bad token on every route", async () => {
    for (const r of ROUTES) {
      expect((await call(r.method, r.url())).statusCode, `${r.method} ${r.route}`).toBe(401);
      expect((await call(r.method, r.url(), { token: "garbage" })).statusCode, `${r.method} ${r.route} garbage`).toBe(401);
    }
    // A session token does not open the open API, and a PAT does not open /api/v1.
    expect((await call("GET", "/oapi/v1/jobs", { token: tokens.root })).statusCode).toBe(401);
    expect((await call("GET", "/api/v1/jobs", { token: tokens.patAll })).statusCode).toBe(401);
  });

  it("answers 403 for a role without the permission, a PAT without the scope", async () => {
    for (const r of ROUTES) {
      if (r.selfService) continue;
      const token = r.auth === "pat:job" ? tokens.patCluster : r.auth === "pat:cluster" ? tokens.patJob : tokens.nobody;
      const res = await call(r.method, r.url(), { token, body: r.method === "GET" || r.method === "DELETE" ? undefined : {} });
      expect(res.statusCode, `${r.method} ${r.route}: ${res.body}`).toBe(403);
    }
  });

  it("answers 403 to a guest writing", async () => {
    for (const r of ROUTES.filter((x) => x.method !== "GET" && !x.selfService && (x.auth ?? "jwt") === "jwt")) {
      const res = await call(r.method, r.url(), { token: tokens.guest, body: {} });
      // A guest may change its own profile and password only.
      if (r.route.startsWith("/api/v1/users/:id") && (r.method === "PATCH" || r.route.endsWith("reset_password"))) continue;
      expect(res.statusCode, `${r.method} ${r.route}: ${res.body}`).toBe(403);
    }
  });

  it("answers 403 to another tenant's administrator on tenant-1 objects", async () => {
    for (const r of ROUTES.filter((x) => x.tenantScoped)) {
      const token = r.auth === "pat:job" || r.auth === "pat:cluster" ? tokens.patTenant2 : tokens.tadmin;
      const res = await call(r.method, r.url(), { token, body: r.method === "GET" || r.method === "DELETE" ? undefined : {} });
      expect(res.statusCode, `${r.method} ${r.route}: ${res.body}`).toBe(403);
    }
  });

  it("answers 400 naming the field for bad input", async () => {
    for (const r of ROUTES.filter((x) => x.bad)) {
      const bad = r.bad as NonNullable<RouteCase["bad"]>;
      const token = r.auth === "pat:job" || r.auth === "pat:cluster" ? tokens.patAll : tokens.root;
      const res = await call(r.method, bad.url ? bad.url() : r.url(), { token, body: bad.body });
      expect(res.statusCode, `${r.method} ${r.route}: ${res.body}`).toBe(400);
      expect(res.json<{ field: string }>().field, `${r.method} ${r.route}: ${res.body}`).toBe(bad.field);
      expect(res.json<{ message: string }>().message).toContain(bad.field);
    }
  });

  it("lets a tenant administrator see only its tenant", async () => {
    const own = await ok("POST", "/api/v1/clusters", tokens.tadmin, { name: "c-two", scheduler_cluster_config: {}, seed_peer_cluster_config: {}, peer_cluster_config: {} });
    expect(own.tenant_id).toBe(ids.tenant2);
    const seen = (await ok("GET", "/api/v1/clusters?per_page=100", tokens.tadmin)) as Array<{ id: number }>;
    expect(seen.map((c) => c.id)).toEqual([own.id]);
    const all = (await ok("GET", "/api/v1/clusters?per_page=100", tokens.root)) as Array<{ id: number }>;
    expect(all.map((c) => c.id)).toEqual(expect.arrayContaining([1, ids.cluster, own.id]));
    // Jobs without cluster ids target only the caller's clusters.
    const job = await ok("POST", "/api/v1/jobs", tokens.tadmin, { type: "sync_peers", scheduler_cluster_ids: null });
    expect(job.scheduler_clusters.map((c: { id: number }) => c.id)).toEqual([own.id]);
    expect((await call("POST", "/api/v1/jobs", { token: tokens.tadmin, body: { type: "sync_peers", scheduler_cluster_ids: [ids.cluster] } })).statusCode).toBe(403);
    // Tenant admins cannot mint root accounts nor create objects in other tenants.
    expect((await call("POST", "/api/v1/users", { token: tokens.tadmin, body: { name: "sneaky", password: "12345678", email: "s@example.com", roles: ["root"] } })).statusCode).toBe(403);
    expect((await call("POST", "/api/v1/applications", { token: tokens.tadmin, body: { name: "x", url: "u", priority: { value: 1 }, tenant_id: 1 } })).statusCode).toBe(403);
    expect((await call("GET", `/api/v1/schedulers?per_page=100`, { token: tokens.tadmin })).json()).toEqual([]);
  });

  it("signs in, refreshes, signs out and invalidates sessions on password change", async () => {
    expect((await call("POST", "/api/v1/users/signin", { body: { name: "root", password: "wrong-pass" } })).statusCode).toBe(401);
    expect((await call("POST", "/api/v1/users/signin", { body: { name: "nosuchuser", password: "whatever1" } })).statusCode).toBe(401);
    const bad = await call("POST", "/api/v1/users/signin", { body: { name: "root" } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().field).toBe("body.password");

    const t1 = await signIn("guest1", "guest-pass-1");
    const refreshed = await call("POST", "/api/v1/users/refresh_token", { token: t1 });
    expect(refreshed.statusCode).toBe(200);
    const t2 = refreshed.json<{ token: string; expire: string }>().token;
    expect(Date.parse(refreshed.json().expire)).toBeGreaterThan(Date.now());
    // The refreshed-away token cannot be refreshed twice nor used.
    expect((await call("POST", "/api/v1/users/refresh_token", { token: t1 })).statusCode).toBe(401);
    expect((await call("GET", `/api/v1/users/${id("guest")}`, { token: t1 })).statusCode).toBe(401);
    expect((await call("GET", `/api/v1/users/${id("guest")}`, { token: t2 })).statusCode).toBe(200);
    expect((await call("POST", "/api/v1/users/signout", { token: t2 })).statusCode).toBe(200);
    expect((await call("GET", `/api/v1/users/${id("guest")}`, { token: t2 })).statusCode).toBe(401);

    const t3 = await signIn("guest1", "guest-pass-1");
    const wrongOld = await call("POST", `/api/v1/users/${id("guest")}/reset_password`, { token: t3, body: { old_password: "not-the-one", new_password: "guest-pass-2" } });
    expect(wrongOld.statusCode).toBe(400);
    expect(wrongOld.json().field).toBe("body.old_password");
    expect((await call("POST", `/api/v1/users/${id("guest")}/reset_password`, { token: t3, body: { old_password: "guest-pass-1", new_password: "guest-pass-2" } })).statusCode).toBe(200);
    expect((await call("GET", `/api/v1/users/${id("guest")}`, { token: t3 })).statusCode).toBe(401);
    const t4 = await signIn("guest1", "guest-pass-2");
    // Root resets without the old password.
    expect((await call("POST", `/api/v1/users/${id("guest")}/reset_password`, { token: tokens.root, body: { new_password: "guest-pass-1" } })).statusCode).toBe(200);
    expect((await call("GET", `/api/v1/users/${id("guest")}`, { token: t4 })).statusCode).toBe(401);
    tokens.guest = await signIn("guest1", "guest-pass-1");
    // Users never carry their password hash.
    expect(JSON.stringify(await ok("GET", "/api/v1/users?per_page=100", tokens.root))).not.toMatch(/password|scrypt/);
  });

  it("keeps sign-up off by default and CORS off without an allowlist", async () => {
    const r = await call("POST", "/api/v1/users/signup", { body: { name: "newbie", password: "12345678", email: "n@example.com" } });
    expect(r.statusCode).toBe(403);
    const pre = await app.inject({ method: "OPTIONS", url: "/api/v1/jobs", headers: { origin: "https://evil.example", "access-control-request-method": "POST" } });
    expect(pre.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("answers CORS preflights only for allowlisted origins when configured", async () => {
    const jwt = new JwtService(await loadSigningKey(db), { realm: "Dragonfly", timeoutMs: 60_000, maxRefreshMs: 60_000 });
    const withCors = await buildManagerApp({ db, jwt, corsAllowOrigins: ["https://console.example"] });
    try {
      const allowed = await withCors.inject({ method: "OPTIONS", url: "/api/v1/jobs", headers: { origin: "https://console.example", "access-control-request-method": "POST" } });
      expect(allowed.headers["access-control-allow-origin"]).toBe("https://console.example");
      const denied = await withCors.inject({ method: "OPTIONS", url: "/api/v1/jobs", headers: { origin: "https://evil.example", "access-control-request-method": "POST" } });
      expect(denied.headers["access-control-allow-origin"]).toBeUndefined();
    } finally {
      await withCors.close();
    }
  });

  it("stores personal access tokens hashed and enforces state, expiry and scope", async () => {
    const created = await ok("POST", "/api/v1/personal-access-tokens", tokens.root, { name: "short-lived", scopes: ["job"], expired_at: new Date(Date.now() + 60_000).toISOString() });
    expect(created.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const rows = await db.query<{ token_hash: string }>("SELECT token_hash FROM personal_access_tokens WHERE id = $1", [created.id]);
    expect(rows[0]?.token_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(rows[0]?.token_hash).not.toContain(created.token);
    const listed = await ok("GET", `/api/v1/personal-access-tokens/${created.id}`, tokens.root);
    expect(listed.token).toBeUndefined();
    expect(JSON.stringify(listed)).not.toContain(rows[0]?.token_hash ?? "x");
    expect((await call("GET", "/oapi/v1/jobs", { token: created.token })).statusCode).toBe(200);
    await ok("PATCH", `/api/v1/personal-access-tokens/${created.id}`, tokens.root, { state: "inactive" });
    expect((await call("GET", "/oapi/v1/jobs", { token: created.token })).statusCode).toBe(403);
    await ok("PATCH", `/api/v1/personal-access-tokens/${created.id}`, tokens.root, { state: "active", expired_at: new Date(Date.now() - 1000).toISOString() });
    expect((await call("GET", "/oapi/v1/jobs", { token: created.token })).statusCode).toBe(403);
    await ok("DELETE", `/api/v1/personal-access-tokens/${created.id}`, tokens.root);
    expect((await call("GET", "/oapi/v1/jobs", { token: created.token })).statusCode).toBe(401);
    expect((await call("POST", "/api/v1/personal-access-tokens", { token: tokens.root, body: { name: "past", expired_at: new Date(Date.now() - 1000).toISOString() } })).statusCode).toBe(400);
  });

  it("accepts Harbor's preheat request and answers in the shape Harbor reads", async () => {
    // As goharbor/harbor src/pkg/p2p/preheat/provider/dragonfly.go marshals it.
    const harbor = {
      type: "preheat",
      args: {
        type: "image",
        url: "https://registry.example.com/v2/library/alpine/manifests/3.19",
        tag: "",
        filtered_query_params: "",
        headers: { Authorization: "Basic aGFyYm9yOnNlY3JldA==" },
        scope: "single_seed_peer",
        concurrent_count: 0,
        timeout: 0,
      },
      scheduler_cluster_ids: null,
    };
    const r = await call("POST", "/oapi/v1/jobs", { token: tokens.patJob, body: harbor });
    expect(r.statusCode, r.body).toBe(200);
    const job = r.json();
    expect(typeof job.id).toBe("number");
    expect(job.state).toBe("PENDING");
    expect(Number.isNaN(Date.parse(job.created_at))).toBe(false);
    expect(Number.isNaN(Date.parse(job.updated_at))).toBe(false);
    expect(job.args.headers.Authorization).toBe("[redacted]");
    expect(job.args.timeout).toBe(3_600_000_000_000);
    expect(job.args.concurrent_count).toBeUndefined();
    expect(job.scheduler_clusters.length).toBeGreaterThan(0);
    const got = await call("GET", `/oapi/v1/jobs/${job.id}`, { token: tokens.patJob });
    expect(got.statusCode).toBe(200);
    expect(got.json().id).toBe(job.id);
    expect(JSON.stringify(got.json())).not.toContain("aGFyYm9yOnNlY3JldA");
    expect(JSON.stringify(await ok("GET", "/api/v1/jobs?per_page=100", tokens.root))).not.toContain("aGFyYm9yOnNlY3JldA");
    expect(JSON.stringify(await ok("GET", "/api/v1/audits?per_page=1000", tokens.root))).not.toContain("aGFyYm9yOnNlY3JldA");
    // Harbor also lists clusters through the open API.
    expect((await call("GET", "/oapi/v1/clusters", { token: tokens.patCluster })).statusCode).toBe(200);
  });

  it("rate-limits job creation per cluster with 429", async () => {
    // c-one allows 3 jobs per second; a burst of 6 must hit the limit.
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push((await call("POST", "/api/v1/jobs", { token: tokens.root, body: { type: "sync_peers", scheduler_cluster_ids: [ids.cluster] } })).statusCode);
    expect(codes).toContain(429);
    expect(codes.filter((c) => c === 200).length).toBeLessThanOrEqual(3);
  });

  it("serves OpenAPI, the Swagger UI and /healthy without auth, and records audits", async () => {
    const doc = await call("GET", "/swagger/doc.json");
    expect(doc.statusCode).toBe(200);
    const spec = doc.json<{ openapi: string; paths: Record<string, unknown> }>();
    expect(spec.openapi).toMatch(/^3\./);
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(["/oapi/v1/jobs", "/api/v1/users/signin", "/api/v1/clusters/{id}", "/oapi/v1/jobs/{id}/cancel", "/api/v1/jobs/{id}/retry"]));
    const ui = await call("GET", "/swagger/");
    expect(ui.statusCode).toBe(200);
    expect(ui.body).toContain("swagger");
    expect((await call("GET", "/healthy")).statusCode).toBe(200);
    // The API bases list their collections from the routes really registered.
    const index = await call("GET", "/api/v1");
    expect(index.statusCode).toBe(200);
    const resources = index.json<{ resources: string[]; docs: string }>().resources;
    expect(resources).toEqual(expect.arrayContaining(["/api/v1/clusters", "/api/v1/jobs", "/api/v1/users", "/api/v1/audits"]));
    expect(resources.every((r) => Object.keys(spec.paths).some((p) => p.startsWith(r)))).toBe(true);
    expect((await call("GET", "/oapi/v1")).json<{ resources: string[] }>().resources).toEqual(expect.arrayContaining(["/oapi/v1/jobs", "/oapi/v1/clusters"]));
    const audits = (await ok("GET", "/api/v1/audits?per_page=1000", tokens.root)) as Array<{ actor_type: string; path: string; state: string; status_code: number }>;
    expect(audits.some((a) => a.actor_type === "PAT" && a.path === "/oapi/v1/jobs" && a.state === "SUCCESS")).toBe(true);
    expect(audits.some((a) => a.actor_type === "UNKNOWN" && a.status_code === 401)).toBe(true);
  });

  it("writes a generated root password to a 0600 file when no password is given", async () => {
    await db.query("DELETE FROM users WHERE name = 'root'");
    const dir = mkdtempSync(join(tmpdir(), "manager-root-"));
    const lines: string[] = [];
    const { createLogger } = await import("../../src/common/logger.js");
    const logger = createLogger({ component: "test" }, { write: (s: string) => lines.push(s) });
    const result = await ensureRootUser(db, dir, logger, {});
    const file = join(dir, INITIAL_PASSWORD_FILE);
    expect(result).toEqual({ created: true, passwordFile: file });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const password = readFileSync(file, "utf8").trim();
    expect(password.length).toBeGreaterThanOrEqual(8);
    expect(lines.join("")).toContain(file);
    expect(lines.join("")).not.toContain(password);
    tokens.root = await signIn("root", password);
    rmSync(dir, { recursive: true, force: true });
  });
});
