// manager.yaml, with Dragonfly's keys (server.rest.addr, server.grpc.listenIP,
// server.grpc.port.start/end, database.*, auth.jwt.*, metrics.*) plus a few of ours, marked
// below. Unknown keys and bad values fail with the key path named.
import { homedir } from "node:os";
import { join } from "node:path";
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { ConfigError, loadConfigFile, parseDuration, validateConfig } from "../common/config.js";
import { checkTracingSection, TracingSectionSchema } from "../common/tracing.js";
import { errorMessage } from "../common/errors.js";
import { TlsSectionSchema } from "../common/grpc/tls.js";
import { ENCRYPTION_KEY_ENV, parseEncryptionKey } from "./key-wrap.js";

const Obj = <T extends Record<string, TSchema>>(props: T) => Type.Object(props, { additionalProperties: false, default: {} });
const Port = (d: number) => Type.Integer({ minimum: 0, maximum: 65535, default: d });
/** Addresses outbound fetches may reach despite the SSRF policy (common/ssrf.ts). */
const Ssrf = () => Obj({ allowCIDRs: Type.Array(Type.String(), { default: [] }), denyPrivate: Type.Boolean({ default: false }) });
const Duration = (d: string) => Type.String({ default: d, description: "Go duration, e.g. 30s, 5m, 48h" });

export const ManagerConfigSchema = Type.Object(
  {
    server: Obj({
      name: Type.String({ default: "d7y/manager" }),
      logLevel: Type.Union(["trace", "debug", "info", "warn", "error", "fatal", "silent"].map((l) => Type.Literal(l)), { default: "info" }),
      /** Ours: PGlite database and the generated root password file live here. */
      dataDir: Type.String({ default: "" }),
      grpc: Obj({
        advertiseIP: Type.String({ default: "" }),
        listenIP: Type.String({ default: "0.0.0.0" }),
        port: Obj({ start: Port(65003), end: Port(65003) }),
        /** mTLS of the gRPC server; also the identity the manager's job clients present to schedulers and peers. */
        tls: TlsSectionSchema,
      }),
      rest: Obj({
        addr: Type.String({ default: ":8080" }),
        /** Dragonfly's server.rest.tls: PEM files; with both set the REST API and console serve HTTPS only. */
        tls: Obj({ cert: Type.String({ default: "" }), key: Type.String({ default: "" }) }),
        /** Ours: CORS stays off unless origins are listed. */
        cors: Obj({ allowOrigins: Type.Array(Type.String(), { default: [] }) }),
      }),
    }),
    database: Obj({
      type: Type.Union([Type.Literal("postgres"), Type.Literal("mysql"), Type.Literal("mariadb"), Type.Literal("polardb")], { default: "postgres" }),
      /** Ours: a postgres:// URL; DATABASE_URL does the same. Without either (and no postgres.host), PGlite in the data dir. */
      url: Type.String({ default: "" }),
      postgres: Obj({
        user: Type.String({ default: "" }),
        password: Type.String({ default: "" }),
        host: Type.String({ default: "" }),
        port: Port(5432),
        dbname: Type.String({ default: "manager" }),
        /**
         * Dragonfly's default is disable; ours is libpq's: prefer (TLS when the server has it,
         * else plaintext; db/ssl-mode.ts). verify-full authenticates the server.
         */
        sslMode: Type.Union(["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].map((m) => Type.Literal(m)), { default: "prefer" }),
        timezone: Type.String({ default: "UTC" }),
        migrate: Type.Boolean({ default: true }),
      }),
    }),
    auth: Obj({
      jwt: Obj({
        realm: Type.String({ default: "Dragonfly" }),
        /** Empty: a key is generated at first start and stored in the database. */
        key: Type.String({ default: "" }),
        timeout: Duration("48h"),
        maxRefresh: Duration("168h"),
      }),
      /** Ours: POST /api/v1/users/signup is refused unless enabled. */
      signUp: Type.Boolean({ default: false }),
    }),
    job: Obj({
      preheat: Obj({
        /** Ours: addresses preheat URLs and registry connections may reach despite the SSRF policy. */
        ssrf: Ssrf(),
        /** Ours: deadline of each request to a registry while resolving an image manifest. */
        registryTimeout: Duration("30s"),
      }),
      syncPeers: Obj({ interval: Duration("24h"), timeout: Duration("10m"), batchSize: Type.Integer({ minimum: 1, default: 500 }) }),
      /** Ours: jobs one manager runs at once. */
      concurrency: Type.Integer({ minimum: 1, maximum: 256, default: 4 }),
    }),
    /** Ours: delivery of webhook events (routes/webhooks.ts, webhooks/dispatcher.ts). */
    webhook: Obj({
      /** Addresses webhook URLs may reach despite the SSRF policy (loopback, link-local and metadata are refused by default). */
      ssrf: Ssrf(),
      /** Attempts of one delivery (network error, timeout or non-2xx answer) before it is marked FAILURE. */
      maxAttempts: Type.Integer({ minimum: 1, maximum: 100, default: 8 }),
      /** Delay before the first retry, doubled on each further one (with jitter), up to maxBackoff. */
      backoff: Duration("30s"),
      maxBackoff: Duration("1h"),
      /** Deadline of one attempt. */
      timeout: Duration("10s"),
    }),
    /**
     * Ours: the key-encryption key (32 bytes, base64) tenant keys are stored wrapped under
     * (key-wrap.ts, issue 21); DAMSELFLY_MANAGER_ENCRYPTION_KEY does the same. Without it the
     * manager hands out no tenant key (daemons' storage.encryption cannot seal).
     */
    encryption: Obj({ key: Type.String({ default: "" }) }),
    metrics: Obj({ enable: Type.Boolean({ default: true }), addr: Type.String({ default: ":8000" }) }),
    /** OpenTelemetry export, off unless tracing.endpoint is set (Dragonfly's keys). */
    tracing: TracingSectionSchema,
    network: Obj({ enableIPv6: Type.Boolean({ default: false }) }),
  },
  { additionalProperties: false },
);

export type ManagerConfigFile = Static<typeof ManagerConfigSchema>;

export interface ManagerConfig extends ManagerConfigFile {
  resolved: {
    dataDir: string;
    databaseUrl: string | undefined;
    rest: { host: string; port: number };
    metrics: { host: string; port: number };
    jwt: { timeoutMs: number; maxRefreshMs: number };
    /** encryption.key (or its environment variable), decoded; undefined when neither is set. */
    encryptionKey: Buffer | undefined;
    syncPeersIntervalMs: number;
    registryTimeoutMs: number;
    webhook: { backoffMs: number; maxBackoffMs: number; timeoutMs: number };
  };
}

/** ":8080" → 0.0.0.0:8080 (or [::] with IPv6); "127.0.0.1:0" as is. */
export function parseAddr(addr: string, key: string, ipv6: boolean): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65535) throw new ConfigError(`${key}: "${addr}" is not host:port`);
  const host = m[1] ?? m[2] ?? "";
  return { host: host || (ipv6 ? "::" : "0.0.0.0"), port };
}

function duration(v: string, key: string): number {
  try {
    return parseDuration(v);
  } catch (e) {
    throw new ConfigError(`${key}: ${errorMessage(e)}`);
  }
}

export function resolveManagerConfig(raw: unknown, source = "config", env: NodeJS.ProcessEnv = process.env): ManagerConfig {
  const c = validateConfig(ManagerConfigSchema, raw, source);
  if (c.database.type !== "postgres") throw new ConfigError(`${source}: database.type: only "postgres" is supported (PGlite is used when no server is configured)`);
  if (c.server.grpc.port.end < c.server.grpc.port.start) throw new ConfigError(`${source}: server.grpc.port.end: must be >= server.grpc.port.start`);
  const pgc = c.database.postgres;
  let databaseUrl = c.database.url || env.DATABASE_URL || undefined;
  if (!databaseUrl && pgc.host) {
    const auth = pgc.user ? `${encodeURIComponent(pgc.user)}${pgc.password ? `:${encodeURIComponent(pgc.password)}` : ""}@` : "";
    databaseUrl = `postgres://${auth}${pgc.host.includes(":") ? `[${pgc.host}]` : pgc.host}:${pgc.port}/${encodeURIComponent(pgc.dbname)}?sslmode=${pgc.sslMode}&options=${encodeURIComponent(`-c TimeZone=${pgc.timezone}`)}`;
  }
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) throw new ConfigError(`${source}: database.url: must start with postgres://`);
  for (const [key, cidrs] of [["job.preheat.ssrf.allowCIDRs", c.job.preheat.ssrf.allowCIDRs], ["webhook.ssrf.allowCIDRs", c.webhook.ssrf.allowCIDRs]] as const) {
    for (const [i, cidr] of cidrs.entries()) {
      if (!/^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(cidr)) throw new ConfigError(`${source}: ${key}.${i}: "${cidr}" is not a CIDR`);
    }
  }
  const restTls = c.server.rest.tls;
  if (Boolean(restTls.cert) !== Boolean(restTls.key)) throw new ConfigError(`${source}: server.rest.tls: cert and key must be set together (${restTls.cert ? "key" : "cert"} is missing)`);
  const ipv6 = c.network.enableIPv6;
  checkTracingSection(c.tracing, source);
  const kek = c.encryption.key || env[ENCRYPTION_KEY_ENV] || "";
  return {
    ...c,
    resolved: {
      dataDir: c.server.dataDir || join(homedir(), ".damselfly", "manager"),
      databaseUrl,
      rest: parseAddr(c.server.rest.addr, `${source}: server.rest.addr`, ipv6),
      metrics: parseAddr(c.metrics.addr, `${source}: metrics.addr`, ipv6),
      jwt: { timeoutMs: duration(c.auth.jwt.timeout, `${source}: auth.jwt.timeout`), maxRefreshMs: duration(c.auth.jwt.maxRefresh, `${source}: auth.jwt.maxRefresh`) },
      encryptionKey: kek ? parseEncryptionKey(kek, c.encryption.key ? `${source}: encryption.key` : ENCRYPTION_KEY_ENV) : undefined,
      syncPeersIntervalMs: duration(c.job.syncPeers.interval, `${source}: job.syncPeers.interval`),
      registryTimeoutMs: duration(c.job.preheat.registryTimeout, `${source}: job.preheat.registryTimeout`),
      webhook: {
        backoffMs: duration(c.webhook.backoff, `${source}: webhook.backoff`),
        maxBackoffMs: duration(c.webhook.maxBackoff, `${source}: webhook.maxBackoff`),
        timeoutMs: duration(c.webhook.timeout, `${source}: webhook.timeout`),
      },
    },
  };
}

export function loadManagerConfig(path: string | undefined, env: NodeJS.ProcessEnv = process.env): ManagerConfig {
  const raw = loadConfigFile(ManagerConfigSchema, path);
  return resolveManagerConfig(raw, path ?? "defaults", env);
}
