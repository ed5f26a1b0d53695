// How the manager serves the web console next to its APIs (src/manager/console.ts), on a
// console directory laid out as Vite builds it: the page at / and at every client route, hashed
// assets cached for good and sent precompressed, while /api, /oapi, /swagger and /healthy answer
// as before and a missing asset stays a 404. Without a build, / says how to make one.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildManagerApp } from "../../src/manager/app.js";
import { JwtService, loadSigningKey } from "../../src/manager/auth/tokens.js";
import { openDatabase, type Database } from "../../src/manager/db/database.js";
import { migrate } from "../../src/manager/db/migrations.js";

const PAGE = '<!doctype html><html><head><script type="module" src="/assets/index-abc123.js"></script></head><body><div id="app"></div></body></html>';
const SCRIPT = `console.log(${JSON.stringify("x".repeat(4000))});\n`;

describe("the manager's web console", () => {
  const work = mkdtempSync(join(tmpdir(), "manager-console-"));
  const built = join(work, "built");
  let db: Database;
  let app: FastifyInstance;
  let bare: FastifyInstance;

  beforeAll(async () => {
    mkdirSync(join(built, "assets"), { recursive: true });
    writeFileSync(join(built, "index.html"), PAGE);
    writeFileSync(join(built, "assets", "index-abc123.js"), SCRIPT);
    writeFileSync(join(built, "assets", "index-abc123.js.gz"), gzipSync(SCRIPT));
    writeFileSync(join(built, "favicon.svg"), "<svg xmlns='http://www.w3.org/2000/svg'/>");
    db = await openDatabase({});
    await migrate(db);
    const jwt = new JwtService(await loadSigningKey(db), { realm: "Dragonfly", timeoutMs: 3_600_000, maxRefreshMs: 7_200_000 });
    app = await buildManagerApp({ db, jwt, consoleDir: built });
    bare = await buildManagerApp({ db, jwt, consoleDir: join(work, "never-built") });
  });

  afterAll(async () => {
    await app?.close();
    await bare?.close();
    await db?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("serves the page at / and at client routes, never cached, under a same-origin CSP", async () => {
    for (const url of ["/", "/jobs", "/jobs/12", "/users?page=2", "/403"]) {
      const r = await app.inject({ method: "GET", url, headers: { accept: "text/html" } });
      expect(r.statusCode, url).toBe(200);
      expect(r.headers["content-type"], url).toMatch(/^text\/html/);
      expect(r.body, url).toBe(PAGE);
      expect(r.headers["cache-control"], url).toBe("no-cache");
      expect(r.headers["content-security-policy"], url).toMatch(/default-src 'self'; script-src 'self'/);
    }
    expect((await app.inject({ method: "HEAD", url: "/jobs/12" })).statusCode).toBe(200);
    // Only reads: a POST to a client path is no route.
    expect((await app.inject({ method: "POST", url: "/jobs" })).statusCode).toBe(404);
  });

  it("sends hashed assets precompressed and cached for good; a missing one is a 404, not the page", async () => {
    const gz = await app.inject({ method: "GET", url: "/assets/index-abc123.js", headers: { "accept-encoding": "gzip" } });
    expect(gz.statusCode).toBe(200);
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(gz.rawPayload.length).toBeLessThan(SCRIPT.length / 10);
    expect(gz.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
    const plain = await app.inject({ method: "GET", url: "/assets/index-abc123.js" });
    expect(plain.body).toBe(SCRIPT);
    expect(plain.headers["content-encoding"]).toBeUndefined();
    const missing = await app.inject({ method: "GET", url: "/assets/index-gone.js" });
    expect(missing.statusCode).toBe(404);
    expect(missing.json<{ message: string }>().message).toMatch(/not found/);
    expect((await app.inject({ method: "GET", url: "/favicon.svg" })).statusCode).toBe(200);
  });

  it("leaves the APIs, their docs and /healthy as they were", async () => {
    for (const url of ["/api/v1/nothing-here", "/oapi/v1/nothing-here", "/api/v1/jobs/1/nothing", "/swagger/nothing-here"]) {
      const r = await app.inject({ method: "GET", url, headers: { accept: "text/html" } });
      expect(r.statusCode, url).toBe(404);
      expect(r.headers["content-type"], url).toMatch(/^application\/json/);
    }
    expect((await app.inject({ method: "GET", url: "/api/v1/jobs" })).statusCode).toBe(401);
    expect((await app.inject({ method: "GET", url: "/api/v1" })).json<{ name: string }>().name).toBe("damselfly manager");
    expect((await app.inject({ method: "GET", url: "/healthy" })).body).toBe("OK");
    expect((await app.inject({ method: "GET", url: "/swagger/" })).body).toContain("swagger");
    // The console's files are no API: they stay out of the OpenAPI document.
    const paths = Object.keys((await app.inject({ method: "GET", url: "/swagger/doc.json" })).json<{ paths: Record<string, unknown> }>().paths);
    expect(paths.filter((p) => !p.startsWith("/api/v1") && !p.startsWith("/oapi/v1") && p !== "/healthy")).toEqual([]);
  });

  it("says how to build the console when it is not built, and keeps the APIs", async () => {
    const r = await bare.inject({ method: "GET", url: "/" });
    expect(r.statusCode).toBe(503);
    expect(r.body).toMatch(/not built .*npm run build:console/);
    expect((await bare.inject({ method: "GET", url: "/jobs" })).statusCode).toBe(404);
    expect((await bare.inject({ method: "GET", url: "/healthy" })).body).toBe("OK");
  });
});
