// The manager's HTTP side as a fastify app factory: REST /api/v1 (JWT), open API /oapi/v1
// (personal access tokens, Harbor's path), /healthy, OpenAPI at /swagger/doc.json with a UI
// at /swagger/, and the web console at /. Everything it needs comes in through `deps`, so tests build it around an
// in-memory PGlite and call it with `inject`.
import cors from "@fastify/cors";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import rateLimit from "@fastify/rate-limit";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyInstance } from "fastify";
import { silentLogger, type Logger } from "../common/logger.js";
import { SsrfPolicy } from "../common/ssrf.js";
import { VERSION } from "../common/version.js";
import { Authenticator } from "./auth/principal.js";
import { registerConsole } from "./console.js";
import type { JwtService } from "./auth/tokens.js";
import type { Database } from "./db/database.js";
import { errorHandler } from "./errors.js";
import { JobRateLimiter } from "./jobs/rate-limiter.js";
import { JobService } from "./jobs/service.js";
import type { JobSecrets } from "./jobs/secrets.js";
import type { ManagerMetrics } from "./metrics.js";
import { registerApiIndex } from "./routes/api-index.js";
import { registerAudits } from "./routes/audits.js";
import { registerClusters } from "./routes/clusters.js";
import { registerCommands } from "./routes/commands.js";
import { CommandHub } from "./commands/hub.js";
import { CommandService } from "./commands/service.js";
import type { RouteContext } from "./routes/context.js";
import { registerJobs } from "./routes/jobs.js";
import { registerResources } from "./routes/resources.js";
import { registerTokens } from "./routes/tokens.js";
import { registerUsers } from "./routes/users.js";
import { registerWebhooks } from "./routes/webhooks.js";
import { registerTenantKeys } from "./routes/tenant-keys.js";
import { TenantKeys } from "./tenant-keys.js";

export interface ManagerAppDeps {
  db: Database;
  jwt: JwtService;
  logger?: Logger;
  /** Allow POST /api/v1/users/signup (off by default). */
  signUp?: boolean;
  /** Origins allowed by CORS; empty or absent means CORS stays off. */
  corsAllowOrigins?: string[];
  limiter?: JobRateLimiter;
  /** Called after a job is stored or canceled, to wake the job runner (and the webhook dispatcher: job.created, job.failed). */
  onJobCreated?: () => void;
  /** Called after a job was canceled, to stop this manager's run of it (runner.cancel). */
  onJobCanceled?: (id: number) => void;
  /** Where webhook URLs may point; the default policy (loopback, link-local, metadata refused) when absent. */
  webhookSsrf?: SsrfPolicy;
  /** Called after a webhook delivery was queued by the API (redeliver), to wake the dispatcher. */
  onWebhookQueued?: () => void;
  /** Where preheat jobs' object storage secrets wait for this manager's runner. */
  jobSecrets?: JobSecrets;
  metrics?: ManagerMetrics;
  /** PEM certificate and key: the REST API serves HTTPS only (server.rest.tls). */
  https?: { cert: Buffer; key: Buffer };
  /** Where the built console is (default: dist/console of this package). */
  consoleDir?: string;
  /** Tenant keys under the manager's encryption key; absent: one without it (rotation is refused). */
  tenantKeys?: TenantKeys;
  /** The daemons on the command channel (grpc/host-commands.ts); absent: none connected. */
  commandHub?: CommandHub;
}

export interface RouteEntry {
  method: string;
  url: string;
}
const ROUTES = new WeakMap<FastifyInstance, RouteEntry[]>();

/** Every route the app registered (tests check each API route against their tables). */
export function registeredRoutes(app: FastifyInstance): RouteEntry[] {
  return ROUTES.get(app) ?? [];
}

export async function buildManagerApp(deps: ManagerAppDeps): Promise<FastifyInstance> {
  const logger = deps.logger ?? silentLogger();
  // pino's Logger and fastify's logger interface differ only in generics; one instance type is
  // used throughout; routes are typed from their TypeBox schemas (routes/context.ts ManagerApp).
  const app = (Fastify({
    loggerInstance: logger,
    disableRequestLogging: true,
    trustProxy: false,
    bodyLimit: 1024 * 1024,
    ...(deps.https ? { https: deps.https } : {}),
    ajv: { customOptions: { allErrors: false, coerceTypes: "array", removeAdditional: false, useDefaults: true } },
  }) as unknown as FastifyInstance).withTypeProvider<TypeBoxTypeProvider>();
  const limiter = deps.limiter ?? new JobRateLimiter();
  const ctx: RouteContext = {
    db: deps.db,
    auth: new Authenticator(deps.db, deps.jwt),
    jwt: deps.jwt,
    logger,
    limiter,
    jobs: new JobService(deps.db, limiter, deps.onJobCreated, deps.jobSecrets, deps.onJobCanceled),
    signUp: deps.signUp ?? false,
  };

  const routes: RouteEntry[] = [];
  app.addHook("onRoute", (r) => {
    for (const method of [r.method].flat()) if (method !== "HEAD") routes.push({ method, url: r.url });
  });
  ROUTES.set(app, routes);

  app.setErrorHandler(errorHandler(logger));
  const consolePage = await registerConsole(app, deps.consoleDir);
  app.setNotFoundHandler((request, reply) => {
    if (consolePage(request, reply)) return;
    return reply.status(404).send({ message: `route ${request.method} ${request.url.split("?")[0] ?? ""} not found` });
  });

  if (deps.corsAllowOrigins && deps.corsAllowOrigins.length > 0) {
    await app.register(cors, { origin: deps.corsAllowOrigins, credentials: false, methods: ["GET", "POST", "PATCH", "PUT", "DELETE"] });
  }
  await app.register(rateLimit, { global: false });
  await app.register(swagger, {
    openapi: {
      info: { title: "Damselfly manager API", description: "Dragonfly-compatible manager REST API and open API.", version: VERSION },
      components: {
        securitySchemes: {
          jwt: { type: "http", scheme: "bearer", bearerFormat: "JWT", description: "token from POST /api/v1/users/signin" },
          personalAccessToken: { type: "http", scheme: "bearer", description: "personal access token (open API)" },
        },
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: "/swagger" });
  app.get("/swagger/doc.json", { schema: { hide: true } }, () => app.swagger());

  if (deps.metrics) {
    const m = deps.metrics;
    app.addHook("onResponse", async (request, reply) => {
      const labels = { code: String(reply.statusCode), method: request.method, url: request.routeOptions.url ?? "unmatched" };
      m.requests.inc(labels);
      m.requestDuration.observe(labels, reply.elapsedTime / 1000);
    });
  }

  app.get("/healthy", { schema: { tags: ["health"], summary: "liveness (no auth)" } }, async () => {
    await deps.db.query("SELECT 1");
    return "OK";
  });

  registerAudits(app, ctx);
  registerUsers(app, ctx);
  registerTokens(app, ctx);
  registerResources(app, ctx);
  registerClusters(app, ctx, "/api/v1");
  registerClusters(app, ctx, "/oapi/v1");
  registerJobs(app, ctx, "/api/v1");
  registerJobs(app, ctx, "/oapi/v1");
  registerWebhooks(app, ctx, { ssrf: deps.webhookSsrf ?? new SsrfPolicy(), onQueued: deps.onWebhookQueued ?? (() => undefined) });
  registerTenantKeys(app, ctx, deps.tenantKeys ?? new TenantKeys(deps.db));
  registerCommands(app, ctx, new CommandService(deps.db, deps.commandHub ?? new CommandHub(), logger.child({ part: "commands" })));
  registerApiIndex(app, "/api/v1", () => routes);
  registerApiIndex(app, "/oapi/v1", () => routes);
  await app.ready();
  return app;
}
