// The web console at `/`: the single-page app built from console/ (`npm run build:console`,
// part of `npm run build`) into dist/console, served from the same origin as /api/v1 so it
// needs no CORS and no CDN. Client routes (/jobs/12, /users) get index.html; /api, /oapi,
// /swagger and /healthy are never answered with the app.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/** dist/console of this package, two levels above src/manager or dist/manager. */
export const CONSOLE_DIR = resolve(fileURLToPath(import.meta.url), "..", "..", "..", "dist", "console");

/** Whether a built console is in `dir`. */
export function consoleBuilt(dir: string = CONSOLE_DIR): boolean {
  return existsSync(join(dir, "index.html"));
}

// Paths the app never answers: the APIs and their docs keep their JSON 404s, and a missing
// asset stays a 404 rather than an HTML page a browser would try to run as a script.
const NOT_THE_APP = /^\/(api|oapi|swagger|healthy|assets)(\/|$)/;

// The app loads nothing from elsewhere and runs no inline script; the API is same-origin.
const PAGE_HEADERS = {
  "cache-control": "no-cache",
  "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** Serves the console from `dir`; returns the not-found fallback that answers client routes with the app. */
export async function registerConsole(app: FastifyInstance, dir: string = CONSOLE_DIR): Promise<(request: FastifyRequest, reply: FastifyReply) => boolean> {
  if (!consoleBuilt(dir)) {
    // A checkout run before `npm run build`: say so where the console would be, not a bare 404.
    app.get("/", { schema: { hide: true } }, (_request, reply) =>
      reply.status(503).type("text/plain; charset=utf-8").send(`The web console is not built (no ${join(dir, "index.html")}): run \`npm run build:console\` and restart the manager. The REST API is at /api/v1, its docs at /swagger/.\n`),
    );
    return () => false;
  }
  await app.register(fastifyStatic, {
    root: dir,
    prefix: "/",
    // One route per built file, listed at start: no file system lookup for arbitrary paths.
    wildcard: false,
    // Vite's build writes .br and .gz next to each asset (console/build/budget.ts).
    preCompressed: true,
    globIgnore: ["**/*.br", "**/*.gz", "budget.json"],
    setHeaders: (reply, path) => {
      // Hashed file names under assets/ never change content; index.html must be revalidated.
      if (path.startsWith(`${join(dir, "assets")}/`)) void reply.header("cache-control", "public, max-age=31536000, immutable");
      else void reply.headers(PAGE_HEADERS);
    },
  });
  return (request, reply) => {
    if (request.method !== "GET" && request.method !== "HEAD") return false;
    const path = request.url.split("?")[0] ?? "";
    if (NOT_THE_APP.test(path)) return false;
    void reply.headers(PAGE_HEADERS).sendFile("index.html");
    return true;
  };
}
