// startScheduler: the whole scheduler process in one call — gRPC (scheduler.v2 + health) with
// the grpc_server_* metrics, Prometheus /metrics, seed-peer ring, GC and (with manager.addr)
// registration + keepalive with the manager and its cluster config applied live (dynconfig).
// Returns the bound ports and close().
import { networkInterfaces, hostname as osHostname } from "node:os";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { instrumentService } from "../common/grpc/metrics.js";
import { Authorizer } from "../common/grpc/authz.js";
import { startGrpcServer } from "../common/grpc/server.js";
import { channelCredentials, loadTls, serverCredentials } from "../common/grpc/tls.js";
import { createLogger } from "../common/logger.js";
import { createRegistry, serveMetrics, type MetricsServer } from "../common/metrics.js";
import { ImageResolver } from "../common/oci/resolver.js";
import { SsrfPolicy } from "../common/ssrf.js";
import { SchedulerService as SchedulerServiceDefinition } from "../gen/scheduler/v2/scheduler.js";
import { ManagerAnnouncer } from "./announcer.js";
import { resolveSchedulerConfig, type SchedulerConfig } from "./config.js";
import { SchedulerDynconfig } from "./dynconfig.js";
import { ResourceGc } from "./gc.js";
import { rateLimitService } from "./rate-limit.js";
import { createSchedulerMetrics } from "./metrics.js";
import { Resource, type Clock } from "./resource/resource.js";
import { evaluatorFromConfig } from "./scheduling/evaluator/index.js";
import { Scheduling } from "./scheduling/scheduling.js";
import { SeedPeers } from "./seed-peers.js";
import { SchedulerService } from "./service.js";

export interface SchedulerHandle {
  grpcPort: number;
  /** 0 when metrics are disabled. */
  metricsPort: number;
  config: SchedulerConfig;
  resource: Resource;
  /** Its parentLimits are the limits in force (the cluster's config's, see dynconfig.ts). */
  scheduling: Scheduling;
  gc: ResourceGc;
  seedPeers: SeedPeers | undefined;
  registry: Registry;
  close(): Promise<void>;
}

export interface SchedulerDeps {
  logger?: Logger;
  registry?: Registry;
  clock?: Clock;
  rng?: () => number;
}

function firstExternalIPv4(): string {
  for (const addrs of Object.values(networkInterfaces())) for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  return "127.0.0.1";
}

/** Accepts a resolved config or a raw (YAML-shaped) object, validated with defaults. */
export async function startScheduler(config: SchedulerConfig | Record<string, unknown> = {}, deps: SchedulerDeps = {}): Promise<SchedulerHandle> {
  const cfg = isResolved(config) ? config : resolveSchedulerConfig(config);
  const log = deps.logger ?? createLogger({ component: "scheduler", level: cfg.server.logLevel });
  const registry = deps.registry ?? createRegistry();
  const metrics = createSchedulerMetrics(registry);
  const resource = new Resource(cfg.scheduler.loadLimit, deps.clock);
  const evaluator = evaluatorFromConfig(cfg.scheduler);
  const scheduling = new Scheduling(resource, cfg.scheduler, evaluator, deps.rng ? { rng: deps.rng } : {});
  // Certificates are read before anything starts: a missing file is a config error.
  const tls = loadTls(cfg.server.tls, "server.tls");
  const managerTls = loadTls(cfg.manager.tls, "manager.tls");
  const seedPeerTls = loadTls(cfg.seedPeer.tls, "seedPeer.tls");
  const seedPeers = cfg.seedPeer.enable ? new SeedPeers(resource, { ...cfg.seedPeer, credentials: channelCredentials(seedPeerTls, ["seed-peer"]) }, log) : undefined;
  const ssrf = new SsrfPolicy({ allowCidrs: cfg.job.preheat.ssrf.allowCIDRs, denyPrivate: cfg.job.preheat.ssrf.denyPrivate });
  const images = new ImageResolver(ssrf.agent(), cfg.job.preheat.registryTimeout);
  const service = new SchedulerService({ resource, scheduling, seedPeers, metrics, log, backToSourceCount: cfg.scheduler.backToSourceCount, parentRefreshInterval: cfg.scheduler.parentRefreshInterval, hostMetrics: cfg.metrics.enableHost, images, authz: new Authorizer(tls !== undefined, log.child({ part: "grpc" })) });
  const gc = new ResourceGc(resource, cfg.scheduler.gc, log, () => seedPeers?.sync());

  const limited = rateLimitService(SchedulerServiceDefinition, service.implementation(), cfg.server.requestRateLimit);
  // Dragonfly's default listen address is IPv4-any; with network.enableIPv6 it is IPv6-any.
  const listenIP = cfg.network.enableIPv6 && cfg.server.listenIP === "0.0.0.0" ? "::" : cfg.server.listenIP;
  const grpc = await startGrpcServer([{ definition: SchedulerServiceDefinition, implementation: instrumentService(SchedulerServiceDefinition, limited, registry) }], listenIP, cfg.server.port, serverCredentials(tls), log.child({ part: "grpc" }));
  grpc.health.setStatus("scheduler.v2.Scheduler", true);
  let metricsServer: MetricsServer | undefined;
  let announcer: ManagerAnnouncer | undefined;
  let dynconfig: SchedulerDynconfig | undefined;
  try {
    if (cfg.metrics.enable) metricsServer = await serveMetrics(registry, cfg.metrics.host, cfg.metrics.port);
    if (cfg.manager.addr) {
      announcer = new ManagerAnnouncer(
        {
          managerAddr: cfg.manager.addr,
          hostname: cfg.server.host || osHostname(),
          ip: cfg.server.advertiseIP || firstExternalIPv4(),
          port: cfg.server.advertisePort || grpc.port,
          idc: cfg.host.idc,
          location: cfg.host.location,
          schedulerClusterId: cfg.manager.schedulerClusterID,
          keepAliveInterval: cfg.manager.keepAlive.interval,
          features: seedPeers ? ["schedule", "preheat"] : ["schedule"],
          credentials: channelCredentials(managerTls, ["manager"]),
        },
        log,
      );
      await announcer.register();
      announcer.startKeepAlive();
      const a = announcer;
      dynconfig = new SchedulerDynconfig(() => a.getScheduler(), scheduling, { refreshIntervalMs: cfg.dynConfig.refreshInterval, local: cfg.scheduler }, log.child({ part: "dynconfig" }));
      await dynconfig.start();
    }
  } catch (e) {
    await dynconfig?.stop();
    announcer?.close();
    await metricsServer?.close();
    await grpc.close();
    throw e;
  }
  seedPeers?.start();
  gc.start();
  log.info({ grpcPort: grpc.port, metricsPort: metricsServer?.port ?? 0, algorithm: cfg.scheduler.algorithm, tls: tls !== undefined }, "scheduler started");

  let closing: Promise<void> | undefined;
  return {
    grpcPort: grpc.port,
    metricsPort: metricsServer?.port ?? 0,
    config: cfg,
    resource,
    scheduling,
    gc,
    seedPeers,
    registry,
    close: () =>
      (closing ??= (async () => {
        gc.stop();
        seedPeers?.close();
        await dynconfig?.stop();
        announcer?.close();
        await grpc.close();
        await metricsServer?.close();
        await images.close();
      })()),
  };
}

function isResolved(c: SchedulerConfig | Record<string, unknown>): c is SchedulerConfig {
  const s = (c as { scheduler?: { retryInterval?: unknown } }).scheduler;
  return typeof s?.retryInterval === "number";
}
