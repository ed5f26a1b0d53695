// dfdaemon.yaml: Dragonfly's keys (camelCase) and defaults where they exist, so an operator's
// existing config file works. Durations are Go/humantime strings ("30s"), sizes byte strings.
import { hostname as osHostname, networkInterfaces } from "node:os";
import { Type, type Static } from "@sinclair/typebox";
import { ConfigError, loadConfigFile, parseDuration } from "../common/config.js";
import { checkTracingSection, TracingSectionSchema } from "../common/tracing.js";
import { tlsFields, tlsFilesOf, type TlsFiles } from "../common/grpc/tls.js";

const obj = <T extends Parameters<typeof Type.Object>[0]>(props: T) => Type.Object(props, { additionalProperties: false, default: {} });
const Port = (d: number) => Type.Integer({ minimum: 0, maximum: 65535, default: d });
const Duration = (d: string) => Type.String({ pattern: "^(\\d+(\\.\\d+)?(ns|us|µs|ms|s|m|h|d))+$", default: d });
/** Dragonfly's proxy.prefetchBandwidthLimit default; also the prefetch rate of a daemon without a proxy section (which prefetches nothing). */
const PREFETCH_BANDWIDTH = "10GB";
const Size = (d: string) => Type.String({ pattern: "^\\d+(\\.\\d+)?\\s*([KMGT]i?B|B)?$", default: d });

export const DaemonConfigSchema = Type.Object(
  {
    host: obj({
      idc: Type.String({ default: "" }),
      location: Type.String({ default: "" }),
      hostname: Type.String({ default: "" }),
      ip: Type.String({ default: "" }),
      schedulerClusterID: Type.Integer({ minimum: 0, default: 0 }),
    }),
    download: obj({
      server: obj({ socketPath: Type.String({ default: "" }), socketMode: Type.String({ pattern: "^0?[0-7]{3}$", default: "0660" }) }),
      pieceTimeout: Duration("360s"),
      collectedPieceTimeout: Duration("360s"),
      concurrentPieceCount: Type.Integer({ minimum: 1, maximum: 64, default: 8 }),
      bandwidthLimit: Size("50GB"),
      /**
       * Ours (Dragonfly has no such key): a task is pinned to the version of the origin's
       * content its first answer had (ETag, else Last-Modified and length). When the origin
       * changes during the download the task fails (never mixing two versions); true restarts
       * it once from scratch instead, with the new version, unless a requester already passed
       * bytes of the old one on (dfget to stdout, the proxy).
       */
      restartOnOriginChange: Type.Boolean({ default: false }),
      /**
       * How pieces are fetched from parents: vortex over TCP (their `tcp_port` in SyncPieces)
       * or over QUIC (their `quic_port`). A parent that announces no QUIC port is asked over
       * TCP either way.
       */
      protocol: Type.Union([Type.Literal("tcp"), Type.Literal("quic")], { default: "tcp" }),
    }),
    upload: obj({
      /** caCert/cert/key: mTLS of the upload gRPC server (Dragonfly's keys; empty = plaintext). */
      server: obj({ ip: Type.String({ default: "0.0.0.0" }), port: Port(4000), ...tlsFields() }),
      /** caCert/cert/key: our certificate towards parents' upload gRPC servers (Dragonfly's upload.client; empty = plaintext). */
      client: obj({ ...tlsFields() }),
      disableShared: Type.Boolean({ default: false }),
      bandwidthLimit: Size("50GB"),
      /**
       * Ours: pieces the piece server sends at once. A piece split among several children
       * reaches each of them late, and none of them can pass it on before it is whole; one at
       * a time at full speed, each child can pass its piece on as early as possible. Our
       * children race their requests across every parent that could serve them, so a busy
       * parent idles nobody. 0 = no limit (Dragonfly's behaviour).
       */
      concurrentPieceCount: Type.Integer({ minimum: 0, maximum: 1024, default: 1 }),
      /**
       * Ours: requests that may wait for a sending slot, in arrival order; any beyond are
       * refused as busy and the child asks another parent. A racing child waits in the queue
       * of every parent holding a piece it needs; one refused there just waits elsewhere.
       */
      queueLength: Type.Integer({ minimum: 0, maximum: 4096, default: 16 }),
      /**
       * Ours: socket send buffer of piece connections ("0" = the kernel's autotuning). A
       * sending slot frees once a piece's last byte is buffered: with megabytes buffered, the
       * next piece would share the link with the rest of the last one, and both land late.
       */
      socketSendBuffer: Size("128KiB"),
    }),
    /** caCert/cert/key: client certificate towards the manager (Dragonfly's keys; empty = plaintext). */
    manager: obj({ addr: Type.String({ default: "" }), ...tlsFields() }),
    /** With manager.addr: how often the scheduler list is refreshed from the manager. */
    dynconfig: obj({ refreshInterval: Duration("1m") }),
    scheduler: obj({
      addrs: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
      announceInterval: Duration("5m"),
      /**
       * Ours (issue 26): how often each scheduler is health-checked (grpc.health.v1). One that
       * fails, or whose stream or connection fails, leaves the hash ring at once (its tasks go
       * to the next scheduler); it rejoins when a check passes. "0s" disables the checks.
       */
      healthCheckInterval: Duration("5s"),
      scheduleTimeout: Duration("3h"),
      maxScheduleCount: Type.Integer({ minimum: 1, default: 5 }),
      /** Client certificate towards the schedulers (Dragonfly's keys; empty = plaintext). */
      ...tlsFields(),
    }),
    seedPeer: obj({
      enable: Type.Boolean({ default: false }),
      type: Type.Union([Type.Literal("super"), Type.Literal("strong"), Type.Literal("weak")], { default: "super" }),
      /**
       * Ours (super-seeding): how long a piece the seed peer just fetched is offered to one
       * child only, the children taking turns, so that the seed peer's upload carries new
       * pieces into the swarm instead of copies of the same piece. "0s" offers every piece to
       * every child at once, as Dragonfly's seed peer does.
       */
      spreadHold: Duration("10s"),
      /**
       * Ours: upload.concurrentPieceCount of a seed peer. Its fresh pieces wait for the child
       * whose turn it is (spreadHold), which may still be receiving another piece; a second
       * slot keeps the seed peer's upload, the one that brings new pieces into the swarm, busy
       * meanwhile.
       */
      uploadConcurrentPieceCount: Type.Integer({ minimum: 0, maximum: 1024, default: 2 }),
    }),
    storage: obj({
      server: obj({
        ip: Type.String({ default: "0.0.0.0" }),
        tcpPort: Port(4005),
        /**
         * Vortex over QUIC (UDP) on the same IP, for children with `download.protocol: quic`;
         * 0 = any free port. Ours: -1 turns it off (then SyncPieces announces no QUIC port).
         */
        quicPort: Type.Integer({ minimum: -1, maximum: 65535, default: 4006 }),
        /**
         * Ours: vortex over TCP under mutual TLS (Dragonfly's client sends pieces in plaintext
         * even with its gRPC on mTLS). With caCert, cert and key (PEM files; the cert serves as
         * both server and client identity, signed by the cluster CA that signs every peer's),
         * this piece server serves only children presenting a certificate of that CA, and this
         * daemon fetches pieces over TLS, checking the parent's certificate names its address.
         * allowPlaintext also serves, and falls back to, plaintext vortex for peers that do not
         * speak TLS there (Dragonfly's, in a mixed swarm): confidentiality then holds only
         * between our peers, and a man in the middle can force the fallback.
         */
        tls: obj({ ...tlsFields(), allowPlaintext: Type.Boolean({ default: false }) }),
      }),
      dir: Type.String({ default: "" }),
      keep: Type.Boolean({ default: true }),
      tier: Type.Union([Type.Literal("disk"), Type.Literal("memory")], { default: "disk" }),
      tmpfsDir: Type.String({ default: "/dev/shm" }),
      /**
       * Ours: whether disk-tier pieces are written with O_DIRECT. "auto" (default): where the
       * filesystem takes it; "always" requires it (a task fails on a filesystem without it);
       * "never" writes through the page cache, as Dragonfly's client does, each write made
       * durable by itself (RWF_DSYNC). The trade, measured on one 2-core host with one virtual
       * disk on 2026-12-07: a page-cache parent serves its children from memory, so a
       * Dragonfly child pulls 1 GiB from it as fast as from Dragonfly's own parent (bench
       * interop/peer-to-dragonfly-1g: 1.00-1.08, against 0.73-0.88 from an O_DIRECT parent,
       * which reads the pieces back from the disk); but the page cache's writeback made our own
       * P2P download of 1 GiB 1.65x slower (daemon/dfget-p2p-cached-1g: 3.71 s against 2.25 s)
       * and a 16-peer swarm at 100 Mbit/s 2-3 % slower (swarm-vs-ideal-n16: 15.94 s against
       * 15.43 s). Hence O_DIRECT by default, with finished tasks read back into the page cache
       * for their children (warmLimit below: 0.94 of Dragonfly's parent); "never" for a parent
       * whose children are mostly Dragonfly clients.
       */
      directIO: Type.Union([Type.Literal("auto"), Type.Literal("always"), Type.Literal("never")], { default: "auto" }),
      /**
       * Ours: a finished disk-tier task up to this size that was written with O_DIRECT is read
       * back into the page cache once, in the background, because its children ask for it
       * next; "0" turns it off. The memory is the kernel's and reclaimable, the cost one read
       * of the task from the disk. It keeps O_DIRECT's write speed and still serves children
       * from memory as a page-cache parent does: see bench interop/peer-to-dragonfly-1g.
       */
      warmLimit: Size("4GiB"),
      /**
       * Ours: the background scrub (storage/scrub.ts) re-reads cached pieces and checks them
       * against the digests recorded when they landed, so a cache hit never serves rotten
       * bytes. One pass every `interval`, reading at most `rateLimit` per second on average
       * ("0" turns it off). 16 MiB/s re-reads a 1 TiB cache in under a day; on this host's
       * disk (0.5-1 GB/s) that is 2-3 % of its read bandwidth.
       */
      scrub: obj({
        interval: Duration("24h"),
        rateLimit: Size("16MiB"),
      }),
      /**
       * Ours (issue 21): pieces sealed at rest with AES-256-GCM under their tenant's key, which
       * the manager hands out (manager.addr, over mTLS only). A task is sealed when its
       * application is listed in `applications`, or its tenant in `tenants` (by name): the
       * tenant of the task's application where the manager knows that application, else the
       * tenant of this host's scheduler cluster. Both empty (default): nothing is sealed and
       * the manager is never asked. Digests stay of the plain bytes, children get plain bytes
       * (under the piece connections' TLS), outputs are plain files readable by their owner
       * only (0600). See SECURITY.md.
       */
      encryption: obj({
        tenants: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
        applications: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
      }),
    }),
    backend: obj({
      maxRetries: Type.Integer({ minimum: 0, maximum: 10, default: 1 }),
      /**
       * Ours (Dragonfly's `backend.maxRetries` counts retries of one request, kept above): how
       * long back-to-source keeps retrying an origin that fails temporarily mid-download
       * (refused or broken connections, 408, 429, 5xx), with backoff from 0.5 s doubling to
       * 8 s apart, before the download fails. A download's own timeout (dfget --timeout)
       * ends it sooner; the pieces that landed stay either way.
       */
      retryTimeout: Duration("60s"),
      requestHeader: Type.Record(Type.String(), Type.String(), { default: {} }),
      /**
       * Ours: file:// URLs (backend/file.ts), for a local dfget only. The daemon reads them with
       * its own rights for any user of its socket, so by default it serves only files every
       * user may read; true trusts the socket's users with the daemon's rights.
       */
      file: obj({ allowPrivate: Type.Boolean({ default: false }) }),
      /**
       * Ours: the model hubs' base URLs when a download names none (dfget --hf-base-url /
       * --ms-base-url, Download.hugging_face / model_scope.base_url): a mirror, or a test's hub.
       */
      huggingFace: obj({ endpoint: Type.String({ default: "https://huggingface.co" }) }),
      modelScope: obj({ endpoint: Type.String({ default: "https://modelscope.cn" }) }),
    }),
    gc: obj({
      interval: Duration("15m"),
      policy: obj({
        taskTTL: Duration("720h"),
        diskThreshold: Size("0"),
        diskHighThresholdPercent: Type.Number({ minimum: 0, maximum: 100, default: 80 }),
        diskLowThresholdPercent: Type.Number({ minimum: 0, maximum: 100, default: 60 }),
      }),
    }),
    health: obj({ server: obj({ ip: Type.String({ default: "0.0.0.0" }), port: Port(4003) }) }),
    metrics: obj({ server: obj({ ip: Type.String({ default: "0.0.0.0" }), port: Port(4002) }) }),
    /** OpenTelemetry export, off unless tracing.endpoint is set (Dragonfly's keys). */
    tracing: TracingSectionSchema,
    /**
     * HTTP(S) proxy and registry mirror (Dragonfly's `proxy.*`). Runs only when the section is
     * present, so a daemon configured without it behaves as before.
     */
    proxy: Type.Optional(
      Type.Object(
        {
          server: obj({
            /**
             * Dragonfly binds 0.0.0.0. Ours: "" (default) binds 127.0.0.1, or 0.0.0.0 when
             * basicAuth is set; a non-loopback address without basicAuth is refused at load
             * (an open proxy lets anyone on the network fetch through this host).
             */
            ip: Type.String({ default: "" }),
            port: Port(4001),
            requestRateLimit: Type.Integer({ minimum: 1, default: 4000 }),
            caCert: Type.String({ default: "" }),
            caKey: Type.String({ default: "" }),
            basicAuth: Type.Optional(Type.Object({ username: Type.String({ minLength: 1, maxLength: 20 }), password: Type.String({ minLength: 1, maxLength: 20 }) }, { additionalProperties: false })),
          }),
          rules: Type.Array(
            Type.Object(
              {
                regex: Type.String({ minLength: 1 }),
                useTLS: Type.Boolean({ default: false }),
                redirect: Type.String({ default: "" }),
                filteredQueryParams: Type.Optional(Type.Array(Type.String())),
              },
              { additionalProperties: false },
            ),
            { default: [{ regex: "blobs/sha256.*", useTLS: false, redirect: "" }] },
          ),
          registryMirror: obj({
            addr: Type.String({ minLength: 1, default: "https://index.docker.io" }),
            cert: Type.String({ default: "" }),
            enableTaskIDBasedBlobDigest: Type.Boolean({ default: false }),
            /**
             * Ours: registry base URLs with their scheme ("http://127.0.0.1:5000",
             * "https://harbor.example.com/prefix"). A registry named without a scheme (containerd's
             * `?ns=host:port`, a bare X-Dragonfly-Registry) takes the scheme and path prefix of the
             * entry with its host:port; others are probed, and may be plain HTTP only on a loopback or listed host.
             */
            registries: Type.Array(Type.String({ pattern: "^https?://([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\])(:\\d{1,5})?(/[^\\s?#]*)?$" }), { default: [] }),
          }),
          /**
           * Ours (issue 23): Maven and YUM/DNF repository mirrors. An origin-form request under
           * `prefix` goes to `upstream` with the prefix swapped; the repository layout (`kind`)
           * decides what goes through the swarm (immutable artifacts and RPMs) and what is always
           * fetched from the upstream (metadata, checksums, repodata). See proxy/mirrors.ts.
           */
          mirrors: Type.Array(
            Type.Object(
              {
                prefix: Type.String({ minLength: 1 }),
                upstream: Type.String({ minLength: 1 }),
                kind: Type.Union([Type.Literal("maven"), Type.Literal("yum")]),
              },
              { additionalProperties: false },
            ),
            { default: [] },
          ),
          /**
           * Dragonfly's Go client key: CONNECT tunnels to hosts whose `host:port` a regx matches
           * are intercepted (TLS terminated with our CA), as are the registry mirror's and the
           * listed registries' hosts and hosts a rule names literally; every other CONNECT is a
           * plain TCP tunnel (intercept.ts).
           */
          hijackHTTPS: obj({ hosts: Type.Array(Type.Object({ regx: Type.String({ minLength: 1 }) }, { additionalProperties: false }), { default: [] }) }),
          disableBackToSource: Type.Boolean({ default: false }),
          prefetch: Type.Boolean({ default: false }),
          prefetchBandwidthLimit: Size(PREFETCH_BANDWIDTH),
          readBufferSize: Size("512KiB"),
        },
        { additionalProperties: false },
      ),
    ),
    security: obj({
      /**
       * Ours: what remote parties (the upload service's DownloadTask: seed triggers, preheats)
       * and the proxy's client-chosen upstreams may reach although the SSRF policy refuses it:
       * loopback, link-local, metadata endpoints and the private ranges 10/8, 172.16/12,
       * 192.168/16, 100.64/10, fc00::/7 (common/ssrf.ts remoteFetchPolicy).
       */
      allowedBackToSourceCIDRs: Type.Array(Type.String(), { default: [] }),
    }),
  },
  { additionalProperties: false },
);

import { DEFAULT_SOCKET_PATH } from "./constants.js";

export { DEFAULT_SOCKET_PATH };

export type DaemonConfigInput = Static<typeof DaemonConfigSchema>;

/** The config with durations and sizes resolved, paths and host identity filled in. */
export interface DaemonConfig extends DaemonConfigInput {
  resolved: {
    ip: string;
    hostname: string;
    socketPath: string;
    storageDir: string;
    pieceTimeoutMs: number;
    collectedPieceTimeoutMs: number;
    announceIntervalMs: number;
    schedulerHealthCheckIntervalMs: number;
    scheduleTimeoutMs: number;
    dynconfigRefreshIntervalMs: number;
    gcIntervalMs: number;
    scrubIntervalMs: number;
    scrubRateBytes: number;
    /** storage.warmLimit in bytes (0 = off). */
    warmLimitBytes: number;
    taskTtlMs: number;
    diskThresholdBytes: number;
    uploadBandwidthBytes: number;
    /** download.bandwidthLimit: the daemon's total download rate (bytes/s), paced per piece. */
    downloadBandwidthBytes: number;
    /** proxy.prefetchBandwidthLimit (bytes/s): the rate of prefetches, instead of downloadBandwidthBytes. */
    prefetchBandwidthBytes: number;
    uploadSendBufferBytes: number;
    spreadHoldMs: number;
    backendRetryTimeoutMs: number;
    /**
     * A one-shot daemon (dfget when no dfdaemon runs): memory-tier tasks go to a tmpfs root of
     * its own, removed when it stops, not the shared `<tmpfsDir>/damselfly-<uid>` of the host's
     * resident daemon.
     */
    privateTmpfs?: boolean;
    /** Set where caCert, cert and key are all given; plaintext where none is. */
    tls: { manager?: TlsFiles; scheduler?: TlsFiles; uploadServer?: TlsFiles; uploadClient?: TlsFiles; pieces?: TlsFiles };
  };
}

export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$/.exec(text.trim());
  if (!m) throw new ConfigError(`invalid size "${text}" (expected e.g. 512KiB, 50GB)`);
  const unit = m[2] ?? "B";
  const mult: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };
  return Math.round(Number(m[1]) * (mult[unit] ?? 1));
}

/** Dragonfly's durations also accept days ("30d"); parseDuration knows up to hours. */
function durationMs(text: string): number {
  return parseDuration(text.replace(/(\d+(?:\.\d+)?)d/g, (_, n: string) => `${Number(n) * 24}h`));
}

/** First non-internal IPv4 address, then IPv6, as Dragonfly picks its advertise IP. */
function defaultIp(): string {
  const all = Object.values(networkInterfaces()).flat().filter((a) => a && !a.internal);
  return all.find((a) => a?.family === "IPv4")?.address ?? all.find((a) => a?.family === "IPv6")?.address ?? "127.0.0.1";
}

function isLoopback(ip: string): boolean {
  return ip === "localhost" || ip === "::1" || /^127\.\d+\.\d+\.\d+$/.test(ip) || /^::ffff:127\./i.test(ip);
}

/** proxy.server.ip: loopback unless basic auth guards the proxy (see the schema). */
function proxyBindIp(server: { ip: string; basicAuth?: unknown }): string {
  if (!server.ip) return server.basicAuth ? "0.0.0.0" : "127.0.0.1";
  if (!server.basicAuth && !isLoopback(server.ip)) {
    throw new ConfigError(`proxy.server.ip: "${server.ip}" is not a loopback address and proxy.server.basicAuth is not set; an open proxy lets anyone who reaches it fetch through this host. Set proxy.server.basicAuth or bind 127.0.0.1`);
  }
  return server.ip;
}

export function resolveDaemonConfig(input: DaemonConfigInput, defaults: { dataDir?: string } = {}): DaemonConfig {
  const storageDir = input.storage.dir || defaults.dataDir || "/var/lib/dragonfly";
  const resolved = {
    ip: input.host.ip || defaultIp(),
    hostname: input.host.hostname || osHostname(),
    socketPath: input.download.server.socketPath || DEFAULT_SOCKET_PATH,
    storageDir,
    pieceTimeoutMs: durationMs(input.download.pieceTimeout),
    collectedPieceTimeoutMs: durationMs(input.download.collectedPieceTimeout),
    announceIntervalMs: durationMs(input.scheduler.announceInterval),
    schedulerHealthCheckIntervalMs: durationMs(input.scheduler.healthCheckInterval),
    scheduleTimeoutMs: durationMs(input.scheduler.scheduleTimeout),
    dynconfigRefreshIntervalMs: durationMs(input.dynconfig.refreshInterval),
    gcIntervalMs: durationMs(input.gc.interval),
    scrubIntervalMs: durationMs(input.storage.scrub.interval),
    scrubRateBytes: parseSize(input.storage.scrub.rateLimit),
    warmLimitBytes: parseSize(input.storage.warmLimit),
    taskTtlMs: durationMs(input.gc.policy.taskTTL),
    diskThresholdBytes: parseSize(input.gc.policy.diskThreshold),
    uploadBandwidthBytes: parseSize(input.upload.bandwidthLimit),
    downloadBandwidthBytes: parseSize(input.download.bandwidthLimit),
    prefetchBandwidthBytes: parseSize(input.proxy?.prefetchBandwidthLimit ?? PREFETCH_BANDWIDTH),
    uploadSendBufferBytes: parseSize(input.upload.socketSendBuffer),
    spreadHoldMs: durationMs(input.seedPeer.spreadHold),
    backendRetryTimeoutMs: durationMs(input.backend.retryTimeout),
    tls: {
      manager: tlsFilesOf(input.manager, "manager"),
      scheduler: tlsFilesOf(input.scheduler, "scheduler"),
      uploadServer: tlsFilesOf(input.upload.server, "upload.server"),
      uploadClient: tlsFilesOf(input.upload.client, "upload.client"),
      pieces: tlsFilesOf(input.storage.server.tls, "storage.server.tls"),
    },
  };
  if (resolved.uploadSendBufferBytes > 1 << 30) throw new ConfigError("upload.socketSendBuffer must be at most 1GiB");
  // A rate of 0 would stop every download for good rather than leave it unlimited.
  if (resolved.downloadBandwidthBytes < 1) throw new ConfigError(`download.bandwidthLimit must be at least 1B (got "${input.download.bandwidthLimit}")`);
  if (resolved.prefetchBandwidthBytes < 1) throw new ConfigError(`proxy.prefetchBandwidthLimit must be at least 1B (got "${input.proxy?.prefetchBandwidthLimit ?? ""}")`);
  const enc = input.storage.encryption;
  if (enc.tenants.length > 0 || enc.applications.length > 0) {
    if (!input.manager.addr) throw new ConfigError("storage.encryption: the keys come from the manager, and manager.addr is not set");
    if (!resolved.tls.manager) throw new ConfigError("storage.encryption: keys are fetched from the manager over mTLS only; set manager.caCert, manager.cert and manager.key");
  }
  if (input.gc.policy.diskLowThresholdPercent > input.gc.policy.diskHighThresholdPercent) {
    throw new ConfigError("gc.policy.diskLowThresholdPercent must not exceed gc.policy.diskHighThresholdPercent");
  }
  const proxy = input.proxy && { ...input.proxy, server: { ...input.proxy.server, ip: proxyBindIp(input.proxy.server) } };
  return { ...input, ...(proxy ? { proxy } : {}), resolved };
}

export function loadDaemonConfig(path: string | undefined, defaults: { dataDir?: string } = {}): DaemonConfig {
  const input = loadConfigFile(DaemonConfigSchema, path);
  checkTracingSection(input.tracing, path ?? "defaults");
  return resolveDaemonConfig(input, defaults);
}
