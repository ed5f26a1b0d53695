// Webhooks against a real manager (startManager on PGlite in a data dir, and on PostgreSQL when
// DATABASE_URL is set) and a real HTTP receiver on 127.0.0.1: job events of real jobs (sync_peers
// through a scheduler on loopback, and one on a cluster without scheduler) arrive signed with the
// secret; a receiver answering 500 then 200 gets one successful delivery after a retry; a
// delivery that succeeded is never sent again, also across a manager restart; a delivery that
// used up its attempts is FAILURE and can be redelivered; the secret and auth header never
// appear in a GET response nor in the logs; an https receiver with a self-signed certificate is
// refused unless the webhook skips certificate verification; guests cannot create webhooks; bad URLs are 400
// naming the field. Then two dispatchers on one database send each delivery exactly once.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { sendUnaryData } from "@grpc/grpc-js";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGrpcServer, type GrpcServerHandle } from "../../src/common/grpc/server.js";
import { createLogger, silentLogger } from "../../src/common/logger.js";
import { SsrfPolicy } from "../../src/common/ssrf.js";
import { SchedulerService } from "../../src/gen/scheduler/v2/scheduler.js";
import { dropSchema, openDatabase, type Database } from "../../src/manager/db/database.js";
import { startManager, type ManagerHandle } from "../../src/manager/server.js";
import { databaseVariants } from "../../src/manager/testing.js";
import { WebhookDispatcher } from "../../src/manager/webhooks/dispatcher.js";
import { enqueueJobEvent } from "../../src/manager/webhooks/events.js";
import { verifySignature } from "../../src/manager/webhooks/signature.js";

const { variants, skipped } = databaseVariants();
if (skipped) {
  console.warn(`manager-webhooks: ${skipped}`);
  describe("manager webhooks on PostgreSQL", () => it.skip(skipped, () => undefined));
}

const ROOT_PASSWORD = "root-pass-123";
const SECRET = "whsec-receiver-one";
const FLAKY_SECRET = "whsec-receiver-flaky";
const AUTH = "Bearer receiver-token-xyz";

interface Received {
  path: string;
  event: string;
  delivery: string;
  timestamp: number;
  signature: string;
  authorization: string | undefined;
  body: string;
  /** What the receiver answered. */
  status: number;
}

/** A webhook receiver: /ok answers 200, /flaky 500 to the first attempt of each delivery, /down `downStatus`. */
async function startReceiver(): Promise<{ server: Server; port: number; got: Received[]; setDown(status: number): void }> {
  const got: Received[] = [];
  let downStatus = 500;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const delivery = String(req.headers["x-damselfly-delivery"]);
      const path = req.url ?? "";
      let status = 200;
      if (path === "/flaky" && !got.some((g) => g.delivery === delivery)) status = 500;
      if (path === "/down") status = downStatus;
      got.push({
        path,
        event: String(req.headers["x-damselfly-event"]),
        delivery,
        timestamp: Number(req.headers["x-damselfly-timestamp"]),
        signature: String(req.headers["x-damselfly-signature"]),
        authorization: req.headers.authorization,
        body: Buffer.concat(chunks).toString("utf8"),
        status,
      });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as AddressInfo).port, got, setDown: (s) => (downStatus = s) };
}

/** A scheduler whose ListHosts answers: sync_peers jobs on its cluster succeed. */
async function startScheduler(): Promise<GrpcServerHandle> {
  const impl = { listHosts: (_call: unknown, cb: sendUnaryData<object>) => cb(null, { hosts: [] }) };
  return startGrpcServer([{ definition: SchedulerService, implementation: impl }], "127.0.0.1", 0);
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined): Promise<T> {
  for (let i = 0; i < 1500; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.each(variants)("webhooks on a manager on $name", (variant) => {
  const dataDir = mkdtempSync(join(tmpdir(), "manager-webhooks-"));
  const lines: string[] = [];
  const gets: string[] = [];
  let manager: ManagerHandle;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let scheduler: GrpcServerHandle;
  let token: string;
  let emptyCluster: number;
  let dropPgSchema: (() => Promise<void>) | undefined;
  let databaseUrl: string | undefined;
  const hooks: Record<"ok" | "flaky" | "down", number> = { ok: 0, flaky: 0, down: 0 };

  const start = async () => {
    manager = await startManager(
      {
        server: { dataDir, logLevel: "debug", rest: { addr: "127.0.0.1:0" }, grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 } } },
        metrics: { enable: false },
        ...(databaseUrl ? { database: { url: databaseUrl } } : {}),
        // Short retries for the test; the receiver is on loopback, which the default policy refuses.
        webhook: { ssrf: { allowCIDRs: ["127.0.0.1/32"] }, backoff: "20ms", maxBackoff: "100ms", maxAttempts: 3, timeout: "5s" },
      },
      { logger: createLogger({ component: "manager", level: "debug" }, { write: (s: string) => lines.push(s) }), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: ROOT_PASSWORD } },
    );
  };
  const api = async (method: "GET" | "POST" | "PATCH" | "DELETE", path: string, body?: unknown, bearer = token) => {
    const r = await request(`http://127.0.0.1:${manager.restPort}${path}`, {
      method,
      headers: { authorization: `Bearer ${bearer}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await r.body.text();
    if (method === "GET") gets.push(text);
    return { status: r.statusCode, text, json: <T = unknown>() => JSON.parse(text) as T };
  };
  const signIn = async (name: string, password: string) => {
    const r = await api("POST", "/api/v1/users/signin", { name, password }, "");
    expect(r.status, r.text).toBe(200);
    return r.json<{ token: string }>().token;
  };
  const createJob = async (clusterId: number) => {
    const r = await api("POST", "/api/v1/jobs", { type: "sync_peers", scheduler_cluster_ids: [clusterId] });
    expect(r.status, r.text).toBe(200);
    return r.json<{ id: number }>().id;
  };
  const deliveries = async (hook: number) => {
    const r = await api("GET", `/api/v1/webhooks/${hook}/deliveries?per_page=100`);
    expect(r.status, r.text).toBe(200);
    return r.json<Array<{ id: number; delivery_id: string; event: string; state: string; attempts: number; status_code: number | null; error: string; next_attempt_at: string | null; delivered_at: string | null }>>();
  };
  /** The received event of a job, waiting for it. */
  const receivedFor = (path: string, event: string, jobId: number) =>
    until(`${event} of job ${jobId} at ${path}`, () => receiver.got.find((g) => g.path === path && g.event === event && g.status === 200 && (JSON.parse(g.body) as { job: { id: number } }).job.id === jobId));

  beforeAll(async () => {
    if (variant.name === "postgres") {
      const base = process.env.DATABASE_URL ?? "";
      const schema = `t_${randomBytes(6).toString("hex")}`;
      await (await openDatabase({ url: base, schema })).close();
      databaseUrl = `${base}${base.includes("?") ? "&" : "?"}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
      dropPgSchema = () => dropSchema(base, schema);
    }
    receiver = await startReceiver();
    scheduler = await startScheduler();
    await start();
    // The scheduler of cluster 1, alive for the test's duration; a second cluster has none.
    await manager.db.query(
      "INSERT INTO schedulers (host_name, ip, port, state, features, last_keep_alive_at, scheduler_cluster_id) VALUES ('sched-1', '127.0.0.1', $1, 'active', '[\"schedule\"]', now() + interval '1 day', 1)",
      [scheduler.port],
    );
    emptyCluster = (await manager.db.query<{ id: number }>("INSERT INTO scheduler_clusters (tenant_id, name) VALUES (1, 'no-scheduler') RETURNING id"))[0]?.id ?? 0;
    token = await signIn("root", ROOT_PASSWORD);
  });

  afterAll(async () => {
    await manager?.close();
    await scheduler?.close();
    receiver?.server.close();
    await dropPgSchema?.();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("refuses webhooks from a guest (403) and bad URLs and secrets (400 naming the field)", async () => {
    expect((await api("POST", "/api/v1/users", { name: "guest1", password: "guest-pass-1", email: "g@example.com" })).status).toBe(200);
    const guest = await signIn("guest1", "guest-pass-1");
    const body = { name: "g", url: `http://127.0.0.1:${receiver.port}/ok`, event_types: ["job.created"], secret: SECRET };
    const denied = await api("POST", "/api/v1/webhooks", body, guest);
    expect(denied.status, denied.text).toBe(403);
    for (const [url, pattern] of [
      ["ftp://127.0.0.1/x", /scheme "ftp"/],
      ["not a url", /not a valid URL/],
      [`http://user:pw@127.0.0.1:${receiver.port}/ok`, /credentials/],
      ["http://169.254.169.254/latest/meta-data/", /SSRF/],
    ] as const) {
      const r = await api("POST", "/api/v1/webhooks", { ...body, url });
      expect(r.status, r.text).toBe(400);
      expect(r.json<{ field: string }>().field).toBe("body.url");
      expect(r.json<{ message: string }>().message).toMatch(pattern);
    }
    const noSecret = await api("POST", "/api/v1/webhooks", { ...body, secret: undefined });
    expect(noSecret.status).toBe(400);
    expect(noSecret.json<{ field: string }>().field).toBe("body.secret");
    const badEvent = await api("POST", "/api/v1/webhooks", { ...body, event_types: ["task.exploded"] });
    expect(badEvent.status).toBe(400);
    expect(badEvent.json<{ field: string }>().field).toBe("body.event_types.0");
    expect((await api("GET", "/api/v1/webhooks", undefined, guest)).json()).toEqual([]);
  });

  it("creates webhooks whose secret and auth header are write-only", async () => {
    const ok = await api("POST", "/api/v1/webhooks", { name: "ok", url: `http://127.0.0.1:${receiver.port}/ok`, event_types: ["job.created", "job.succeeded", "job.failed"], secret: SECRET, auth_header: AUTH });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json()).toMatchObject({ name: "ok", active: true, has_auth_header: true, event_types: ["job.created", "job.succeeded", "job.failed"] });
    expect(ok.text).not.toContain(SECRET);
    expect(ok.text).not.toContain(AUTH);
    hooks.ok = ok.json<{ id: number }>().id;
    hooks.flaky = (await api("POST", "/api/v1/webhooks", { name: "flaky", url: `http://127.0.0.1:${receiver.port}/flaky`, event_types: ["job.succeeded"], secret: FLAKY_SECRET })).json<{ id: number }>().id;
    hooks.down = (await api("POST", "/api/v1/webhooks", { name: "down", url: `http://127.0.0.1:${receiver.port}/down`, event_types: ["job.failed"], secret: SECRET })).json<{ id: number }>().id;
    const got = await api("GET", `/api/v1/webhooks/${hooks.ok}`);
    expect(got.json()).toMatchObject({ id: hooks.ok, has_auth_header: true });
    expect(Object.keys(got.json<object>())).not.toContain("secret");
  });

  it("delivers job.created and job.succeeded signed with the secret, and retries a 500 into exactly one success", async () => {
    const job = await createJob(1);
    const created = await receivedFor("/ok", "job.created", job);
    const succeeded = await receivedFor("/ok", "job.succeeded", job);
    for (const g of [created, succeeded]) {
      expect(verifySignature(SECRET, g.timestamp, g.body, g.signature), g.signature).toBe(true);
      expect(verifySignature("another-secret", g.timestamp, g.body, g.signature)).toBe(false);
      expect(g.authorization).toBe(AUTH);
      expect(JSON.parse(g.body)).toMatchObject({ event: g.event, job: { id: job, type: "sync_peers", scheduler_cluster_ids: [1] } });
    }
    expect((JSON.parse(succeeded.body) as { job: { state: string } }).job.state).toBe("SUCCESS");
    const flaky = await receivedFor("/flaky", "job.succeeded", job);
    expect(verifySignature(FLAKY_SECRET, flaky.timestamp, flaky.body, flaky.signature)).toBe(true);
    const attempts = receiver.got.filter((g) => g.delivery === flaky.delivery);
    expect(attempts.map((g) => g.status)).toEqual([500, 200]);
    // Both attempts carry the same body; only the signed timestamp may differ.
    expect(attempts[0]?.body).toBe(attempts[1]?.body);
    const [logged] = (await deliveries(hooks.flaky)).filter((d) => d.delivery_id === flaky.delivery);
    expect(logged).toMatchObject({ event: "job.succeeded", state: "SUCCESS", attempts: 2, status_code: 200, error: "", next_attempt_at: null });
    expect(logged?.delivered_at).not.toBeNull();
    const okLog = await deliveries(hooks.ok);
    expect(okLog.filter((d) => d.delivery_id === created.delivery || d.delivery_id === succeeded.delivery).map((d) => d.state)).toEqual(["SUCCESS", "SUCCESS"]);
  });

  it("delivers job.failed, marks a delivery FAILURE after its attempts, and redelivers it on request", async () => {
    const job = await createJob(emptyCluster);
    const failed = await receivedFor("/ok", "job.failed", job);
    expect(JSON.parse(failed.body)).toMatchObject({ event: "job.failed", job: { id: job, state: "FAILURE" } });
    const down = await until("the /down delivery to fail", async () => (await deliveries(hooks.down)).find((d) => d.state === "FAILURE"));
    expect(down).toMatchObject({ attempts: 3, status_code: 500, error: "receiver answered HTTP 500", next_attempt_at: null, delivered_at: null });
    expect(receiver.got.filter((g) => g.delivery === down.delivery_id).map((g) => g.status)).toEqual([500, 500, 500]);

    // A delivered one is never sent again, even on request.
    const delivered = (await deliveries(hooks.ok)).find((d) => d.delivery_id === failed.delivery);
    const again = await api("POST", `/api/v1/webhooks/${hooks.ok}/deliveries/${delivered?.id}/redeliver`);
    expect(again.status, again.text).toBe(409);

    receiver.setDown(204);
    const redeliver = await api("POST", `/api/v1/webhooks/${hooks.down}/deliveries/${down.id}/redeliver`);
    expect(redeliver.status, redeliver.text).toBe(200);
    expect(redeliver.json()).toMatchObject({ delivery_id: down.delivery_id, state: "PENDING", attempts: 0 });
    const done = await until("the redelivery", async () => (await deliveries(hooks.down)).find((d) => d.id === down.id && d.state === "SUCCESS"));
    expect(done).toMatchObject({ attempts: 1, status_code: 204 });
    expect(receiver.got.filter((g) => g.delivery === down.delivery_id).map((g) => g.status)).toEqual([500, 500, 500, 204]);
  });

  it("never sends a delivered event again, also after a manager restart", async () => {
    const before = receiver.got.length;
    await manager.close();
    await start();
    token = await signIn("root", ROOT_PASSWORD);
    const job = await createJob(1);
    await receivedFor("/ok", "job.succeeded", job);
    await receivedFor("/flaky", "job.succeeded", job);
    // Deliveries are claimed oldest first: one left pending by the first manager would have been
    // sent before this job's; the receiver saw only this job's events since the restart.
    const since = receiver.got.slice(before).map((g) => (JSON.parse(g.body) as { job: { id: number } }).job.id);
    expect(new Set(since)).toEqual(new Set([job]));
    const successes = new Map<string, number>();
    for (const g of receiver.got.filter((x) => x.status >= 200 && x.status < 300)) successes.set(g.delivery, (successes.get(g.delivery) ?? 0) + 1);
    expect([...successes.values()].every((n) => n === 1), JSON.stringify([...successes])).toBe(true);
    for (const hook of [hooks.ok, hooks.flaky, hooks.down]) {
      for (const d of await deliveries(hook)) {
        expect(d.state, JSON.stringify(d)).toBe("SUCCESS");
        expect(successes.get(d.delivery_id), JSON.stringify(d)).toBe(1);
      }
    }
  });

  it("verifies https receivers' certificates unless the webhook sets skip_cert_verify", async () => {
    const dir = mkdtempSync(join(tmpdir(), "webhook-tls-"));
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")], { stdio: ["ignore", "ignore", "pipe"] });
    const seen: string[] = [];
    const tls = createHttpsServer({ cert: readFileSync(join(dir, "cert.pem")), key: readFileSync(join(dir, "key.pem")) }, (req, res) => {
      seen.push(String(req.headers["x-damselfly-delivery"]));
      req.resume();
      req.on("end", () => res.writeHead(200).end());
    });
    await new Promise<void>((r) => tls.listen(0, "127.0.0.1", r));
    try {
      const url = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/hook`;
      const strict = await api("POST", "/api/v1/webhooks", { name: "tls-strict", url, event_types: ["job.created"], secret: SECRET });
      const lax = await api("POST", "/api/v1/webhooks", { name: "tls-skip", url, event_types: ["job.created"], secret: SECRET, skip_cert_verify: true });
      expect([strict.status, lax.status], strict.text + lax.text).toEqual([200, 200]);
      expect(lax.json()).toMatchObject({ skip_cert_verify: true });
      await createJob(1);
      const refused = await until("the strict delivery to fail", async () => (await deliveries(strict.json<{ id: number }>().id)).find((d) => d.state === "FAILURE"));
      expect(refused).toMatchObject({ attempts: 3, status_code: null });
      expect(refused.error).toMatch(/certificate/i);
      const accepted = await until("the lax delivery", async () => (await deliveries(lax.json<{ id: number }>().id)).find((d) => d.state === "SUCCESS"));
      expect(seen).toEqual([accepted.delivery_id]);
      for (const hook of [strict, lax]) expect((await api("DELETE", `/api/v1/webhooks/${hook.json<{ id: number }>().id}`)).status).toBe(200);
    } finally {
      tls.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("updates and deletes webhooks, and never shows the secret in a response or the logs", async () => {
    const patched = await api("PATCH", `/api/v1/webhooks/${hooks.ok}`, { active: false, secret: "whsec-rotated-secret" });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json()).toMatchObject({ active: false });
    expect(patched.text).not.toContain("whsec-rotated-secret");
    const badUrl = await api("PATCH", `/api/v1/webhooks/${hooks.ok}`, { url: "gopher://127.0.0.1/" });
    expect(badUrl.status).toBe(400);
    expect(badUrl.json<{ field: string }>().field).toBe("body.url");
    await api("GET", "/api/v1/webhooks?per_page=100");
    await api("GET", `/api/v1/webhooks/${hooks.flaky}`);
    const all = [...gets, lines.join("")].join("\n");
    for (const secret of [SECRET, FLAKY_SECRET, "whsec-rotated-secret", AUTH, "receiver-token-xyz"]) expect(all).not.toContain(secret);
    expect(lines.join("")).toContain("webhook attempt failed, will retry");
    expect((await api("DELETE", `/api/v1/webhooks/${hooks.down}`)).status).toBe(200);
    expect((await api("GET", `/api/v1/webhooks/${hooks.down}/deliveries`)).status).toBe(404);
  });
});

describe.each(variants)("webhook deliveries shared by two managers on $name", (variant) => {
  let db: Database;
  let second: Database;
  let cleanup: () => Promise<void>;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;

  beforeAll(async () => {
    const opened = await variant.open();
    db = opened.db;
    // Two managers on PostgreSQL have a pool each; PGlite has one process, so they share it.
    second = opened.url && opened.schema ? await openDatabase({ url: opened.url, schema: opened.schema, maxConnections: 4 }) : db;
    cleanup = async () => {
      if (second !== db) await second.close();
      await opened.cleanup();
    };
    receiver = await startReceiver();
  });
  afterAll(async () => {
    receiver?.server.close();
    await cleanup?.();
  });

  it("sends each delivery exactly once", async () => {
    await db.query("INSERT INTO webhooks (tenant_id, name, url, event_types, secret) VALUES (1, 'shared', $1, '[\"job.created\"]', $2)", [`http://127.0.0.1:${receiver.port}/ok`, SECRET]);
    const n = 40;
    for (let i = 1; i <= n; i++) {
      expect(await enqueueJobEvent(db, "job.created", { id: i, tenant_id: 1, type: "sync_peers", state: "PENDING", task_id: `group_${i}`, bio: "", created_at: new Date(), updated_at: new Date() })).toBe(1);
    }
    const ssrf = new SsrfPolicy({ allowCidrs: ["127.0.0.1/32"] });
    const managers = [db, second].map((d) => new WebhookDispatcher({ db: d, logger: silentLogger(), ssrf, backoffMs: 20, maxBackoffMs: 100, pollIntervalMs: 20, concurrency: 4 }));
    for (const m of managers) m.start();
    try {
      await until("all deliveries", async () => {
        const [row] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM webhook_deliveries WHERE state = 'SUCCESS'");
        return row?.n === n ? true : undefined;
      });
    } finally {
      for (const m of managers) await m.stop();
    }
    const ids = receiver.got.map((g) => g.delivery);
    expect(ids).toHaveLength(n);
    expect(new Set(ids).size).toBe(n);
    const rows = await db.query<{ attempts: number }>("SELECT attempts FROM webhook_deliveries");
    expect(rows.every((r) => r.attempts === 1)).toBe(true);
  });
});
