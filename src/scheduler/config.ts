// scheduler.yaml: Dragonfly's camelCase keys and defaults (scheduler/config/config.go,
// constants.go) where Dragonfly has the key; our additions (bandwidth/ab algorithms, upload
// load limits, parent limits that Dragonfly keeps in its dynconfig) sit next to them.
import { type Static, Type } from "@sinclair/typebox";
import { ConfigError, loadConfigFile, parseDuration, validateConfig } from "../common/config.js";
import { checkTracingSection, TracingSectionSchema } from "../common/tracing.js";
import { SsrfPolicy } from "../common/ssrf.js";
import { TlsSectionSchema, type TlsFiles } from "../common/grpc/tls.js";

const Duration = (def: string, description: string) => Type.String({ default: def, description, pattern: "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" });
const Port = (def: number) => Type.Integer({ minimum: 0, maximum: 65535, default: def });
const Obj = <T extends Parameters<typeof Type.Object>[0]>(props: T) => Type.Object(props, { additionalProperties: false, default: {} });

export const ALGORITHMS = ["default", "bandwidth", "ab"] as const;
export const EVALUATORS = ["default", "bandwidth"] as const;
const Evaluator = (def: (typeof EVALUATORS)[number]) => Type.Union(EVALUATORS.map((e) => Type.Literal(e)), { default: def });

export const SchedulerConfigSchema = Type.Object(
  {
    server: Obj({
      advertiseIP: Type.String({ default: "", description: "IP announced to the manager; the first non-loopback address when empty" }),
      advertisePort: Port(8002),
      listenIP: Type.String({ default: "0.0.0.0" }),
      port: Port(8002),
      host: Type.String({ default: "", description: "hostname announced to the manager; os.hostname() when empty" }),
      requestRateLimit: Type.Number({ minimum: 0, default: 4000 }),
      /** mTLS of the gRPC server (Dragonfly's server.tls). */
      tls: TlsSectionSchema,
      logLevel: Type.Union(["trace", "debug", "info", "warn", "error", "fatal", "silent"].map((l) => Type.Literal(l)), { default: "info" }),
    }),
    scheduler: Obj({
      algorithm: Type.Union(ALGORITHMS.map((a) => Type.Literal(a)), { default: "default" }),
      backToSourceCount: Type.Integer({ minimum: 0, default: 200 }),
      retryBackToSourceLimit: Type.Integer({ minimum: 0, default: 4 }),
      retryLimit: Type.Integer({ minimum: 1, default: 5 }),
      retryInterval: Duration("500ms", "base wait between scheduling attempts (jittered)"),
      filterParentLimit: Type.Integer({ minimum: 1, maximum: 1000, default: 15 }),
      candidateParentLimit: Type.Integer({ minimum: 1, maximum: 20, default: 3 }),
      /**
       * Ours: how often a downloading peer's parents are topped up with peers that started
       * serving since it was scheduled (0s disables). Peers starting together otherwise all stay
       * on the seed peer and the few peers that qualified when they registered.
       */
      parentRefreshInterval: Duration("1s", "how often a running peer is offered newly qualifying parents; 0s disables"),
      /**
       * Ours: parents a top-up may offer beyond the DAG's candidateParentLimit (any qualifying
       * peer, also one downstream of the child, which the DAG cannot make its parent), so that
       * pieces flow both ways as in a mesh; 0 keeps top-ups to the DAG as Dragonfly does. Our
       * peers race each piece across all their parents, so the more they know, the likelier
       * one of them is free the moment they need it.
       */
      meshParentLimit: Type.Integer({ minimum: 0, maximum: 20, default: 20 }),
      /** Arms of `algorithm: ab`; hosts are split between them by hash of the host id. */
      ab: Obj({ a: Evaluator("default"), b: Evaluator("bandwidth") }),
      /** Concurrent uploads a host may serve before it stops being offered as a parent. */
      loadLimit: Obj({ seedPeer: Type.Integer({ minimum: 1, default: 2000 }), peer: Type.Integer({ minimum: 1, default: 200 }) }),
      gc: Obj({
        pieceDownloadTimeout: Duration("30m", "a running peer with no piece progress for this long leaves"),
        peerGCInterval: Duration("10s", "how often peers are reclaimed"),
        peerTTL: Duration("24h", "a peer not updated for this long leaves"),
        taskGCInterval: Duration("30m", "how often tasks without peers are removed"),
        hostGCInterval: Duration("5m", "how often silent hosts are reclaimed"),
        hostTTL: Duration("1h", "a host that never told its announce interval is reclaimed after this"),
      }),
    }),
    seedPeer: Obj({
      enable: Type.Boolean({ default: true }),
      /** Client certificate towards seed peers' upload servers (Dragonfly's seedPeer.tls). */
      tls: TlsSectionSchema,
      taskDownloadTimeout: Duration("10h", "deadline of a DownloadTask triggered on a seed peer"),
      healthCheckInterval: Duration("30s", "how often seed peers are health-checked to rebuild the hash ring"),
    }),
    /**
     * How often the scheduler reads its cluster's config from the manager (GetScheduler) and
     * applies it (dynconfig.ts); Dragonfly's dynConfig.refreshInterval. Only with manager.addr.
     */
    dynConfig: Obj({ refreshInterval: Duration("1m", "how often the cluster config is read from the manager") }),
    host: Obj({ idc: Type.String({ default: "" }), location: Type.String({ default: "" }) }),
    manager: Obj({
      addr: Type.String({ default: "", description: "manager gRPC address host:port; empty runs without a manager" }),
      /** Client certificate towards the manager (Dragonfly's manager.tls). */
      tls: TlsSectionSchema,
      schedulerClusterID: Type.Integer({ minimum: 1, default: 1 }),
      keepAlive: Obj({ interval: Duration("5s", "KeepAlive period towards the manager") }),
    }),
    metrics: Obj({
      enable: Type.Boolean({ default: true }),
      addr: Type.String({ default: ":8000" }),
      enableHost: Type.Boolean({ default: false }),
    }),
    network: Obj({ enableIPv6: Type.Boolean({ default: false }) }),
    /** OpenTelemetry export, off unless tracing.endpoint is set (Dragonfly's keys). */
    tracing: TracingSectionSchema,
    /** Ours, as in the manager: PreheatImage/StatImage fetch registry manifests themselves. */
    job: Obj({
      preheat: Obj({
        /** Addresses registry connections may reach despite the SSRF policy (loopback, link-local, metadata are refused otherwise). */
        ssrf: Obj({ allowCIDRs: Type.Array(Type.String(), { default: [] }), denyPrivate: Type.Boolean({ default: false }) }),
        registryTimeout: Duration("30s", "deadline of each registry request while resolving an image manifest"),
      }),
    }),
  },
  { additionalProperties: false },
);

export type SchedulerConfigFile = Static<typeof SchedulerConfigSchema>;

/** Durations converted to milliseconds; everything else as in the file. */
export interface SchedulerConfig {
  server: SchedulerConfigFile["server"];
  scheduler: Omit<SchedulerConfigFile["scheduler"], "retryInterval" | "parentRefreshInterval" | "gc"> & {
    retryInterval: number;
    parentRefreshInterval: number;
    gc: { pieceDownloadTimeout: number; peerGCInterval: number; peerTTL: number; taskGCInterval: number; hostGCInterval: number; hostTTL: number };
  };
  seedPeer: { enable: boolean; tls?: TlsFiles; taskDownloadTimeout: number; healthCheckInterval: number };
  dynConfig: { refreshInterval: number };
  host: SchedulerConfigFile["host"];
  manager: { addr: string; tls?: TlsFiles; schedulerClusterID: number; keepAlive: { interval: number } };
  metrics: SchedulerConfigFile["metrics"] & { host: string; port: number };
  network: SchedulerConfigFile["network"];
  tracing: SchedulerConfigFile["tracing"];
  job: { preheat: { ssrf: { allowCIDRs: string[]; denyPrivate: boolean }; registryTimeout: number } };
}

function duration(path: string, text: string, source: string): number {
  try {
    return parseDuration(text);
  } catch {
    throw new ConfigError(`${source}: ${path}: invalid duration "${text}" (expected e.g. 500ms, 30s, 5m, 1h)`);
  }
}

/** ":8000" / "127.0.0.1:8000" / "[::1]:8000" → host and port. */
export function parseListenAddr(addr: string, source = "config", key = "metrics.addr"): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`${source}: ${key}: invalid address "${addr}" (expected host:port or :port)`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** Validates a parsed config object (missing keys take defaults) and resolves durations. */
export function resolveSchedulerConfig(raw: unknown, source = "config"): SchedulerConfig {
  const c = validateConfig(SchedulerConfigSchema, raw ?? {}, source);
  const g = c.scheduler.gc;
  const d = (k: string, v: string) => duration(k, v, source);
  return {
    server: c.server,
    scheduler: {
      ...c.scheduler,
      retryInterval: d("scheduler.retryInterval", c.scheduler.retryInterval),
      parentRefreshInterval: d("scheduler.parentRefreshInterval", c.scheduler.parentRefreshInterval),
      gc: {
        pieceDownloadTimeout: d("scheduler.gc.pieceDownloadTimeout", g.pieceDownloadTimeout),
        peerGCInterval: d("scheduler.gc.peerGCInterval", g.peerGCInterval),
        peerTTL: d("scheduler.gc.peerTTL", g.peerTTL),
        taskGCInterval: d("scheduler.gc.taskGCInterval", g.taskGCInterval),
        hostGCInterval: d("scheduler.gc.hostGCInterval", g.hostGCInterval),
        hostTTL: d("scheduler.gc.hostTTL", g.hostTTL),
      },
    },
    seedPeer: {
      enable: c.seedPeer.enable,
      tls: c.seedPeer.tls,
      taskDownloadTimeout: d("seedPeer.taskDownloadTimeout", c.seedPeer.taskDownloadTimeout),
      healthCheckInterval: d("seedPeer.healthCheckInterval", c.seedPeer.healthCheckInterval),
    },
    dynConfig: { refreshInterval: d("dynConfig.refreshInterval", c.dynConfig.refreshInterval) },
    host: c.host,
    manager: { addr: c.manager.addr, tls: c.manager.tls, schedulerClusterID: c.manager.schedulerClusterID, keepAlive: { interval: d("manager.keepAlive.interval", c.manager.keepAlive.interval) } },
    metrics: { ...c.metrics, ...parseListenAddr(c.metrics.addr, source) },
    network: c.network,
    tracing: checkTracingSection(c.tracing, source),
    job: { preheat: { ssrf: checkCidrs(c.job.preheat.ssrf, source), registryTimeout: d("job.preheat.registryTimeout", c.job.preheat.registryTimeout) } },
  };
}

function checkCidrs<T extends { allowCIDRs: string[] }>(ssrf: T, source: string): T {
  for (const [i, cidr] of ssrf.allowCIDRs.entries()) {
    try {
      new SsrfPolicy({ allowCidrs: [cidr] });
    } catch {
      throw new ConfigError(`${source}: job.preheat.ssrf.allowCIDRs.${i}: "${cidr}" is not a CIDR`);
    }
  }
  return ssrf;
}

export function loadSchedulerConfig(path: string | undefined): SchedulerConfig {
  const raw = loadConfigFile(SchedulerConfigSchema, path);
  return resolveSchedulerConfig(raw, path ?? "defaults");
}
