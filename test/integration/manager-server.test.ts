// startManager as `damselfly manager` runs it: embedded PGlite in the data dir (state survives
// a restart, root password generated into a 0600 file and never logged) and, when
// DATABASE_URL is set, PostgreSQL; REST, gRPC health and metrics on their ports.
import { credentials } from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/common/logger.js";
import { HealthClient } from "../../src/common/grpc/health.js";
import { dropSchema, openDatabase } from "../../src/manager/db/database.js";
import { INITIAL_PASSWORD_FILE } from "../../src/manager/auth/bootstrap.js";
import { startManager } from "../../src/manager/server.js";
import { PG_SKIP_NOTICE } from "../../src/manager/testing.js";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function config(dataDir: string, extra: Record<string, unknown> = {}) {
  return {
    server: { dataDir, logLevel: "info", rest: { addr: "127.0.0.1:0" }, grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 } } },
    metrics: { addr: "127.0.0.1:0" },
    ...extra,
  };
}

async function signIn(restPort: number, password: string): Promise<string> {
  const r = await request(`http://127.0.0.1:${restPort}/api/v1/users/signin`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "root", password }) });
  const body = (await r.body.json()) as { token?: string };
  if (r.statusCode !== 200 || !body.token) throw new Error(`signin → ${r.statusCode}`);
  return body.token;
}

describe("startManager", () => {
  it("runs on PGlite in the data dir, keeps its state across a restart and never logs the root password", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "manager-server-"));
    dirs.push(dataDir);
    const lines: string[] = [];
    const logger = createLogger({ component: "manager" }, { write: (s: string) => lines.push(s) });
    const first = await startManager(config(dataDir), { logger, env: {} });
    let token: string;
    let password: string;
    try {
      const file = join(dataDir, INITIAL_PASSWORD_FILE);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      password = readFileSync(file, "utf8").trim();
      expect(lines.join("")).toContain(file);
      expect(lines.join("")).not.toContain(password);

      const healthy = await request(`http://127.0.0.1:${first.restPort}/healthy`);
      expect(healthy.statusCode).toBe(200);
      await healthy.body.dump();
      token = await signIn(first.restPort, password);
      const created = await request(`http://127.0.0.1:${first.restPort}/api/v1/applications`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ name: "kept", url: "https://example.com", priority: { value: 1 } }),
      });
      expect(created.statusCode).toBe(200);
      await created.body.dump();

      const health = new HealthClient(`127.0.0.1:${first.grpcPort}`, credentials.createInsecure());
      const status = await new Promise<number>((resolve, reject) => health.check({ service: "manager.v2.Manager" }, (e, r) => (e ? reject(e) : resolve(r.status))));
      health.close();
      expect(status).toBe(1);

      const metrics = await request(`http://127.0.0.1:${first.metricsPort}/metrics`);
      const text = await metrics.body.text();
      expect(text).toContain("dragonfly_manager_version");
      expect(text).toMatch(/dragonfly_manager_requests_total\{code="200",method="POST",url="\/api\/v1\/applications"\} 1/);
      expect(text).toContain("dragonfly_manager_schedulers");
    } finally {
      await first.close();
    }

    const second = await startManager(config(dataDir), { logger, env: {} });
    try {
      // Same signing key (the old session is still valid) and same data.
      const apps = await request(`http://127.0.0.1:${second.restPort}/api/v1/applications`, { headers: { authorization: `Bearer ${token}` } });
      expect(apps.statusCode).toBe(200);
      expect(((await apps.body.json()) as Array<{ name: string }>).map((a) => a.name)).toEqual(["kept"]);
      expect(readFileSync(join(dataDir, INITIAL_PASSWORD_FILE), "utf8").trim()).toBe(password);
    } finally {
      await second.close();
    }
  });

  const url = process.env.DATABASE_URL;
  if (!url && process.env.CI === "true") throw new Error("CI=true but DATABASE_URL is unset");
  (url ? it : it.skip)(url ? "runs on PostgreSQL from database.url with DRAGONFLY_INITIAL_ROOT_PASSWORD" : PG_SKIP_NOTICE, async () => {
    const base = url ?? "";
    const schema = `t_${randomBytes(6).toString("hex")}`;
    // Creates the schema; the manager then connects with it as search_path.
    await (await openDatabase({ url: base, schema })).close();
    const dataDir = mkdtempSync(join(tmpdir(), "manager-server-pg-"));
    dirs.push(dataDir);
    const sep = base.includes("?") ? "&" : "?";
    const m = await startManager(config(dataDir, { database: { url: `${base}${sep}options=${encodeURIComponent(`-c search_path=${schema}`)}` } }), {
      logger: createLogger({ component: "manager", level: "silent" }),
      env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: "pg-root-pass" },
    });
    try {
      expect(m.db.kind).toBe("pg");
      await signIn(m.restPort, "pg-root-pass");
      const [row] = await m.db.query<{ n: number }>("SELECT count(*)::int AS n FROM schema_migrations");
      expect(row?.n).toBeGreaterThan(0);
    } finally {
      await m.close();
      await dropSchema(base, schema);
    }
  });
});
