// Starting a whole manager: database (PostgreSQL or PGlite) with migrations, root account,
// REST + open API, gRPC manager.v2 (first free port of server.grpc.port.start..end), the job
// runner, the webhook dispatcher, liveness sweep, periodic sync_peers, and metrics.
import { join } from "node:path";
import { instrumentService } from "../common/grpc/metrics.js";
import { Authorizer } from "../common/grpc/authz.js";
import { startGrpcServer, type GrpcServerHandle } from "../common/grpc/server.js";
import { channelCredentials, loadTls, readPemFile, serverCredentials, type TlsMaterial } from "../common/grpc/tls.js";
import { createLogger, type Logger } from "../common/logger.js";
import { createRegistry, serveMetrics, type MetricsServer } from "../common/metrics.js";
import { SsrfPolicy } from "../common/ssrf.js";
import { ManagerService } from "../gen/manager/v2/manager.js";
import { buildManagerApp } from "./app.js";
import { ensureRootUser } from "./auth/bootstrap.js";
import { JwtService, loadSigningKey } from "./auth/tokens.js";
import { resolveManagerConfig, type ManagerConfig } from "./config.js";
import { openDatabase, type Database } from "./db/database.js";
import type { JobRow, SchedulerRow } from "./db/rows.js";
import { migrate } from "./db/migrations.js";
import { startGc } from "./gc.js";
import { startLivenessSweep } from "./grpc/liveness.js";
import { ManagerGrpcService } from "./grpc/service.js";
import { TenantKeysGrpcService } from "./grpc/tenant-keys.js";
import { TenantAccess } from "./tenant-access.js";
import { PeerLookup } from "./peer-lookup.js";
import { ClientPool } from "./jobs/clients.js";
import { TenantKeys } from "./tenant-keys.js";
import { TenantKeysService } from "../gen/damselfly/manager/v1/keys.js";
import { HostCommandsService } from "../gen/damselfly/manager/v1/commands.js";
import { CommandHub } from "./commands/hub.js";
import { HostCommandsGrpcService } from "./grpc/host-commands.js";
import { JobRunner } from "./jobs/runner.js";
import { JobSecrets } from "./jobs/secrets.js";
import { ManagerMetrics } from "./metrics.js";
import { WebhookDispatcher } from "./webhooks/dispatcher.js";
import { enqueueJobEvent } from "./webhooks/events.js";
import { errorMessage } from "../common/errors.js";

export interface ManagerHandle {
  restPort: number;
  grpcPort: number;
  /** 0 when metrics are disabled. */
  metricsPort: number;
  db: Database;
  config: ManagerConfig;
  close(): Promise<void>;
}

export interface ManagerDeps {
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
}

function isResolved(c: unknown): c is ManagerConfig {
  return typeof c === "object" && c !== null && "resolved" in c;
}

async function bindGrpc(service: ManagerGrpcService, keys: TenantKeysGrpcService, commands: HostCommandsGrpcService, metrics: ManagerMetrics, host: string, start: number, end: number, tls: TlsMaterial | undefined, log: Logger): Promise<GrpcServerHandle> {
  let last: unknown;
  const services = [
    { definition: ManagerService, implementation: instrumentService(ManagerService, service.handlers(), metrics.registry) },
    { definition: TenantKeysService, implementation: instrumentService(TenantKeysService, keys.handlers(), metrics.registry) },
    { definition: HostCommandsService, implementation: instrumentService(HostCommandsService, commands.handlers(), metrics.registry) },
  ];
  for (let port = start; port <= end; port++) {
    try {
      return await startGrpcServer(services, host, port, serverCredentials(tls), log);
    } catch (e) {
      last = e;
    }
  }
  throw new Error(`server.grpc.port: no free port in ${start}..${end}: ${errorMessage(last)}`);
}

/** server.rest.tls's PEM files, read once at start; an unreadable one names its key. */
function restTls(tls: { cert: string; key: string }): { cert: Buffer; key: Buffer } | undefined {
  if (!tls.cert) return undefined;
  return { cert: readPemFile(tls.cert, "server.rest.tls.cert"), key: readPemFile(tls.key, "server.rest.tls.key") };
}

/** Accepts a resolved config or a raw (YAML-shaped) object, validated with defaults. */
export async function startManager(config: ManagerConfig | Record<string, unknown> = {}, deps: ManagerDeps = {}): Promise<ManagerHandle> {
  const env = deps.env ?? process.env;
  const cfg = isResolved(config) ? config : resolveManagerConfig(config, "config", env);
  const log = deps.logger ?? createLogger({ component: "manager", level: cfg.server.logLevel });
  const r = cfg.resolved;
  // Read before anything starts: a missing certificate file is a config error, not a late failure.
  const tls = loadTls(cfg.server.grpc.tls, "server.grpc.tls");
  const cleanups: Array<() => Promise<void> | void> = [];
  const close = async () => {
    for (const fn of cleanups.reverse()) await fn();
  };
  try {
    // Before the database: a bad file fails the start at once.
    const https = restTls(cfg.server.rest.tls);
    const db = await openDatabase(r.databaseUrl ? { url: r.databaseUrl } : { dataDir: join(r.dataDir, "pgdata") });
    cleanups.push(() => db.close());
    log.info({ driver: db.kind, ...(db.kind === "pglite" ? { dir: join(r.dataDir, "pgdata") } : {}) }, "database opened");
    if (db.kind === "pglite" || cfg.database.postgres.migrate) {
      const applied = await migrate(db);
      if (applied.length > 0) log.info({ versions: applied }, "database migrated");
    }
    await ensureRootUser(db, r.dataDir, log, env);
    const jwt = new JwtService(await loadSigningKey(db, cfg.auth.jwt.key || undefined), { realm: cfg.auth.jwt.realm, ...r.jwt });
    // Tenant keys stored in plain (before schema version 4) are wrapped here; a missing or wrong
    // encryption key stops the start while keys are stored.
    const tenantKeys = new TenantKeys(db, r.encryptionKey);
    const wrappedNow = await tenantKeys.prepare();
    if (wrappedNow > 0) log.info({ keys: wrappedNow }, "tenant keys wrapped under the manager's encryption key");

    const metrics = new ManagerMetrics(createRegistry());
    metrics.schedulerCounts = async () => {
      const rows = await db.query<Pick<SchedulerRow, "state"> & { n: number }>("SELECT state, count(*)::int AS n FROM schedulers GROUP BY state");
      return Object.fromEntries(rows.map((row) => [row.state, row.n]));
    };

    const ssrf = new SsrfPolicy({ allowCidrs: cfg.job.preheat.ssrf.allowCIDRs, denyPrivate: cfg.job.preheat.ssrf.denyPrivate });
    // Object storage secrets of preheat jobs stay in this process, between the API and the runner.
    const jobSecrets = new JobSecrets();
    const webhookSsrf = new SsrfPolicy({ allowCidrs: cfg.webhook.ssrf.allowCIDRs, denyPrivate: cfg.webhook.ssrf.denyPrivate });
    const dispatcher = new WebhookDispatcher({
      db,
      logger: log.child({ part: "webhooks" }),
      ssrf: webhookSsrf,
      maxAttempts: cfg.webhook.maxAttempts,
      backoffMs: r.webhook.backoffMs,
      maxBackoffMs: r.webhook.maxBackoffMs,
      timeoutMs: r.webhook.timeoutMs,
    });
    // Jobs (and GetTenantKey's lookup of a peer not yet recorded) call schedulers and peers'
    // upload services with the manager's own certificate.
    const clientCredentials = { scheduler: channelCredentials(tls, ["scheduler"]), daemon: channelCredentials(tls, ["seed-peer", "peer"]) };
    const runner = new JobRunner({
      db,
      secrets: jobSecrets,
      logger: log.child({ part: "jobs" }),
      ssrf,
      metrics,
      concurrency: cfg.job.concurrency,
      registryTimeoutMs: r.registryTimeoutMs,
      credentials: clientCredentials,
      onFinished: () => dispatcher.wake(),
    });
    const onJobCreated = () => {
      runner.wake();
      dispatcher.wake();
    };
    // Daemons holding the command channel (issue 25): the REST API sends, the gRPC service carries.
    const commandHub = new CommandHub();
    const app = await buildManagerApp({ commandHub, db, jwt, logger: log, signUp: cfg.auth.signUp, corsAllowOrigins: cfg.server.rest.cors.allowOrigins, metrics, onJobCreated, onJobCanceled: (id) => runner.cancel(id), jobSecrets, webhookSsrf, onWebhookQueued: () => dispatcher.wake(), tenantKeys, ...(https ? { https } : {}) });
    cleanups.push(() => app.close());
    await app.listen({ host: r.rest.host, port: r.rest.port });
    const restPort = app.server.address() !== null && typeof app.server.address() === "object" ? (app.server.address() as { port: number }).port : r.rest.port;

    const grpcLog = log.child({ part: "grpc" });
    const authz = new Authorizer(tls !== undefined, grpcLog);
    const service = new ManagerGrpcService(db, grpcLog, metrics, authz);
    // A peer asking for its key before sync_peers recorded it is looked up on the schedulers.
    const lookupClients = new ClientPool(clientCredentials);
    cleanups.push(() => lookupClients.close());
    const peerLookup = new PeerLookup({ db, clients: lookupClients, logger: grpcLog });
    const tenantAccess = new TenantAccess(db, peerLookup);
    const keysService = new TenantKeysGrpcService(tenantKeys, tenantAccess, authz, grpcLog);
    const commandsService = new HostCommandsGrpcService(commandHub, db, tenantAccess, authz, grpcLog);
    const grpc = await bindGrpc(service, keysService, commandsService, metrics, cfg.server.grpc.listenIP, cfg.server.grpc.port.start, cfg.server.grpc.port.end, tls, grpcLog);
    grpc.health.setStatus("manager.v2.Manager", true);
    cleanups.push(() => grpc.close());

    runner.start();
    cleanups.push(() => runner.stop());
    dispatcher.start();
    cleanups.push(() => dispatcher.stop());
    const sweep = startLivenessSweep(db, log);
    cleanups.push(() => sweep.stop());
    const gc = startGc(db, log);
    cleanups.push(() => gc.stop());

    if (r.syncPeersIntervalMs > 0) {
      // Dragonfly refreshes the peers table from every scheduler on this interval.
      const timer = setInterval(() => {
        db.transaction(async (tx) => {
          const [job] = await tx.query<JobRow>("INSERT INTO jobs (tenant_id, task_id, type, bio) VALUES (1, 'group_' || gen_random_uuid(), 'sync_peers', 'periodic') RETURNING *");
          if (!job) throw new Error("job insert returned nothing");
          await tx.query("INSERT INTO job_scheduler_clusters (job_id, scheduler_cluster_id) SELECT $1, id FROM scheduler_clusters", [job.id]);
          await enqueueJobEvent(tx, "job.created", job);
        })
          .then(onJobCreated)
          .catch((err: unknown) => log.warn({ err }, "periodic sync_peers failed"));
      }, r.syncPeersIntervalMs);
      timer.unref();
      cleanups.push(() => clearInterval(timer));
    }

    let metricsServer: MetricsServer | undefined;
    if (cfg.metrics.enable) {
      metricsServer = await serveMetrics(metrics.registry, r.metrics.host, r.metrics.port);
      cleanups.push(() => metricsServer?.close());
    }
    log.info({ rest: `${r.rest.host}:${restPort}`, grpc: `${cfg.server.grpc.listenIP}:${grpc.port}`, grpcTls: tls !== undefined, metrics: metricsServer ? `${r.metrics.host}:${metricsServer.port}` : "off" }, "manager started");
    return { restPort, grpcPort: grpc.port, metricsPort: metricsServer?.port ?? 0, db, config: cfg, close };
  } catch (e) {
    await close().catch(() => undefined);
    throw e;
  }
}
