// dfdaemon: wires storage, the native piece server, the upload gRPC service (network), the
// download gRPC service (unix socket), health, metrics, host announcements and GC. A seed peer
// is the same process with `seedPeer.enable`: a super host the scheduler triggers.
import { mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createLogger, type Logger } from "../common/logger.js";
import { hostId as makeHostId, peerId as makePeerId } from "../common/ids.js";
import { createRegistry, serveMetrics, type MetricsServer } from "../common/metrics.js";
import { instrumentService } from "../common/grpc/metrics.js";
import { closeGrpcServer, createGrpcServer, startGrpcServer, type GrpcServerHandle } from "../common/grpc/server.js";
import { serveUnixCallers, type UnixCallersSocket } from "./grpc/unix-callers.js";
import { channelCredentials, loadTls, serverCredentials } from "../common/grpc/tls.js";
import { remoteFetchPolicy } from "../common/ssrf.js";
import { DfdaemonDownloadService, DfdaemonUploadService } from "../gen/dfdaemon/v2/dfdaemon.js";
import { startPieceServer, type PieceServer, type PieceServerStats } from "../native/index.js";
import { BackendRegistry } from "./backend/index.js";
import type { DaemonConfig } from "./config.js";
import { DownloadService } from "./download/service.js";
import { runGc, startGc } from "./gc.js";
import { FileBackend } from "./backend/file.js";
import { ObjectStorageBackend } from "./backend/object-storage.js";
import { modelHubBackends } from "./backend/model-hubs.js";
import { HdfsBackend } from "./backend/hdfs.js";
import { Scrubber, startScrub, type ScrubReport } from "./storage/scrub.js";
import { serveHealth, type HealthServer } from "./health.js";
import { buildHost, reusedHost } from "./host.js";
import { daemonMetrics } from "./metrics.js";
import { UploadClientPool } from "./piece/parents.js";
import { startProxy } from "./proxy/server.js";
import { HostAnnouncer } from "./scheduler/announcer.js";
import { Dynconfig } from "./scheduler/dynconfig.js";
import { CommandChannel } from "./manager/command-channel.js";
import { CommandExecutor } from "./manager/commands.js";
import { VERSION } from "../common/version.js";
import { SchedulerPool } from "./scheduler/pool.js";
import { ownTmpfsRoot, privateTmpfsRoot } from "./storage/tmpfs-root.js";
import { Storage } from "./storage/storage.js";
import { AtRest } from "./storage/at-rest.js";
import { ManagerTenantKeys } from "./storage/tenant-keys.js";
import { ClientConfigApplier } from "./scheduler/client-config.js";
import { DownloadBandwidth } from "./task/bandwidth.js";
import { TaskManager } from "./task/manager.js";
import { PieceSpreader } from "./upload/spread.js";
import { UploadService } from "./upload/service.js";

export interface DaemonHandle {
  hostId: string;
  uploadPort: number;
  piecePort: number;
  /** Vortex QUIC port; undefined when `storage.server.quicPort` is -1. */
  quicPort: number | undefined;
  /** Counters of the piece server, TCP and QUIC (tests, dfctl). */
  pieceServerStats(): PieceServerStats;
  healthPort: number;
  metricsPort: number;
  /** The HTTP(S) proxy / registry mirror port; 0 when the config has no `proxy` section. */
  proxyPort: number;
  socketPath: string;
  tasks: TaskManager;
  storage: Storage;
  schedulers: SchedulerPool;
  /** download.bandwidthLimit / proxy.prefetchBandwidthLimit in force, and what they admitted. */
  bandwidth: DownloadBandwidth;
  /** Runs one GC pass now (tests, dfctl). */
  gc(): Promise<void>;
  /** One scrub pass now, at the configured rate (storage.scrub). */
  scrub(): Promise<ScrubReport>;
  close(): Promise<void>;
}

export async function startDaemon(config: DaemonConfig, log: Logger = createLogger({ component: config.seedPeer.enable ? "seed-peer" : "dfdaemon" })): Promise<DaemonHandle> {
  const r = config.resolved;
  const seed = config.seedPeer.enable;
  const hostId = makeHostId(r.ip, r.hostname, seed);
  const registry = createRegistry();
  const metrics = daemonMetrics(registry);
  const closers: Array<() => Promise<void> | void> = [];
  const close = async () => {
    for (const c of closers.reverse()) await Promise.resolve(c()).catch((e: unknown) => log.warn({ err: String(e) }, "shutdown step failed"));
  };

  try {
    // The tmpfs root only exists, and is only served from, when this daemon's tier is memory.
    let memoryDir: string | undefined;
    if (config.storage.tier === "memory") {
      if (r.privateTmpfs) {
        const own = await privateTmpfsRoot(config.storage.tmpfsDir);
        closers.push(() => own.remove());
        memoryDir = own.root;
      } else memoryDir = await ownTmpfsRoot(config.storage.tmpfsDir, hostId);
    }
    // Vortex over TCP under mutual TLS (storage.server.tls): one identity serves and fetches.
    const pieceTls = loadTls(r.tls.pieces, "storage.server.tls");
    const piecePem = pieceTls ? { caPem: pieceTls.ca.toString(), certPem: pieceTls.cert.toString(), keyPem: pieceTls.key.toString() } : undefined;
    const allowPlaintext = config.storage.server.tls.allowPlaintext;
    // Keys of tasks sealed at rest (storage.encryption) come from the manager, over mTLS only;
    // without both, nothing is sealed, and tasks sealed earlier cannot be reopened.
    const managerTls = loadTls(r.tls.manager, "manager");
    // One identity towards the manager for tenant keys, dynconfig and the command channel.
    const managerCredentials = channelCredentials(managerTls, ["manager"]);
    const tenantKeys =
      config.manager.addr && managerTls
        ? new ManagerTenantKeys({ managerAddr: config.manager.addr, credentials: managerCredentials, schedulerClusterId: config.host.schedulerClusterID, currentTtlMs: r.dynconfigRefreshIntervalMs })
        : undefined;
    if (tenantKeys) closers.push(() => tenantKeys.close());
    const atRest = new AtRest(config.storage.encryption, tenantKeys);
    const storage = await Storage.open({
      diskDir: join(r.storageDir, "content", "tasks"),
      ...(memoryDir ? { memoryDir } : {}),
      keep: config.storage.keep,
      directIO: config.storage.directIO,
      warmLimitBytes: r.warmLimitBytes,
      ...(piecePem ? { pieceTls: { ...piecePem, allowPlaintext } } : {}),
      atRest,
      log,
    });

    const pieceServer: PieceServer = await startPieceServer({
      host: config.storage.server.ip,
      port: config.storage.server.tcpPort,
      dataDir: join(r.storageDir, "content", "tasks"),
      ...(memoryDir ? { tmpfsDir: memoryDir } : {}),
      rateLimitBytesPerSec: r.uploadBandwidthBytes,
      uploadSlots: seed ? config.seedPeer.uploadConcurrentPieceCount : config.upload.concurrentPieceCount,
      uploadQueue: config.upload.queueLength,
      sendBufferBytes: r.uploadSendBufferBytes,
      // Same IP as the TCP server, as Dragonfly binds both; -1 leaves QUIC off.
      quicPort: config.storage.server.quicPort,
      ...(piecePem ? { tls: { ...piecePem, mode: allowPlaintext ? ("optional" as const) : ("required" as const) } } : {}),
    });
    closers.push(() => pieceServer.close());
    metrics.countUploadsFrom(() => pieceServer.stats().bytesServed);

    const httpOpts = { maxRetries: config.backend.maxRetries, requestHeader: config.backend.requestHeader };
    const remoteSsrf = remoteFetchPolicy(config.security.allowedBackToSourceCIDRs);
    const hubEndpoints = { hf: config.backend.huggingFace.endpoint, modelscope: config.backend.modelScope.endpoint };
    const backends = {
      local: BackendRegistry.withDefaults(httpOpts, [new FileBackend({ allowPrivate: config.backend.file.allowPrivate }), new ObjectStorageBackend({}), new HdfsBackend(), ...modelHubBackends(httpOpts, hubEndpoints)], metrics),
      // A seed trigger's object storage endpoint, namenode or hub base URL is a remote party's choice: SSRF-checked.
      remote: BackendRegistry.withDefaults({ ...httpOpts, ssrf: remoteSsrf }, [new ObjectStorageBackend({ ssrf: remoteSsrf }), new HdfsBackend({ ssrf: remoteSsrf }), ...modelHubBackends({ ...httpOpts, ssrf: remoteSsrf }, hubEndpoints)], metrics),
    };
    closers.push(() => backends.local.close());
    closers.push(() => backends.remote.close());

    // Certificates are read before anything is served: a missing file is a config error.
    const schedulerTls = loadTls(r.tls.scheduler, "scheduler");
    const uploadTls = loadTls(r.tls.uploadServer, "upload.server");
    const schedulers = new SchedulerPool(config.scheduler.addrs, channelCredentials(schedulerTls, ["scheduler"]), log);
    closers.push(() => schedulers.close());
    const uploadClients = new UploadClientPool(channelCredentials(loadTls(r.tls.uploadClient, "upload.client"), ["seed-peer", "peer"]));
    closers.push(() => uploadClients.close());

    const localBandwidth = { download: r.downloadBandwidthBytes, prefetch: r.prefetchBandwidthBytes };
    const bandwidth = new DownloadBandwidth(localBandwidth);
    const tasks = new TaskManager(
      {
        hostId,
        ip: r.ip,
        hostname: r.hostname,
        seedPeer: seed,
        concurrentPieceCount: config.download.concurrentPieceCount,
        pieceTimeoutMs: r.pieceTimeoutMs,
        collectedPieceTimeoutMs: r.collectedPieceTimeoutMs,
        scheduleTimeoutMs: r.scheduleTimeoutMs,
        maxScheduleCount: config.scheduler.maxScheduleCount,
        tier: config.storage.tier,
        restartOnOriginChange: config.download.restartOnOriginChange,
        backendRetryTimeoutMs: r.backendRetryTimeoutMs,
        protocol: config.download.protocol,
        bandwidth,
      },
      storage,
      backends,
      schedulers,
      uploadClients,
      log,
      metrics,
    );

    // Upload bandwidth in use, sampled from the piece server for SyncHost and AnnounceHost.
    let txBandwidth = 0;
    let lastBytes = 0;
    let lastAt = Date.now();
    const sampler = setInterval(() => {
      const s = pieceServer.stats();
      const now = Date.now();
      // uint64 on the wire: a fractional rate fails serialisation of the whole AnnounceHost.
      txBandwidth = Math.round(Math.max(0, ((s.bytesServed - lastBytes) * 1000) / Math.max(1, now - lastAt)));
      lastBytes = s.bytesServed;
      lastAt = now;
      // Tasks whose pieces went to children lately are in use: GC leaves them alone.
      for (const u of pieceServer.drainUploads()) tasks.uploads.served(u.taskId);
    }, 1000);
    sampler.unref();
    closers.push(() => clearInterval(sampler));

    let uploadPort = 0;
    let proxyPort = 0;
    const host = reusedHost(
      () => `${uploadPort}/${proxyPort}/${pieceServer.port}`,
      () =>
        buildHost(
          {
            ip: r.ip,
            hostname: r.hostname,
            seedPeer: seed,
            seedType: config.seedPeer.type,
            idc: config.host.idc,
            location: config.host.location,
            uploadPort,
            piecePort: pieceServer.port,
            proxyPort,
            schedulerClusterId: config.host.schedulerClusterID,
            disableShared: config.upload.disableShared,
            maxTxBandwidth: r.uploadBandwidthBytes,
          },
          txBandwidth,
        ),
    );
    const newPeerId = () => makePeerId(r.ip, r.hostname, seed);

    const upload = new UploadService({ storage, tasks, log, hostId, ip: r.ip, piecePort: () => pieceServer.port, quicPort: () => pieceServer.quicPort, host, seedPeer: seed, newPeerId, backends: backends.remote, spreader: seed && r.spreadHoldMs > 0 ? new PieceSpreader(r.spreadHoldMs) : undefined });
    const uploadServer: GrpcServerHandle = await startGrpcServer(
      [{ definition: DfdaemonUploadService, implementation: instrumentService(DfdaemonUploadService, upload.handlers(), registry) }],
      config.upload.server.ip,
      config.upload.server.port,
      serverCredentials(uploadTls),
      log.child({ part: "upload-grpc" }),
    );
    uploadPort = uploadServer.port;
    closers.push(() => uploadServer.close());

    if (config.proxy) {
      const proxy = await startProxy({ config: config.proxy, tasks, storage, log: log.child({ component: "proxy" }), registry, caDir: join(r.storageDir, "proxy"), allowedCidrs: config.security.allowedBackToSourceCIDRs, serverIp: r.ip });
      proxyPort = proxy.port;
      closers.push(() => proxy.close());
    }

    const gcPolicy = { taskTtlMs: r.taskTtlMs, diskThresholdBytes: r.diskThresholdBytes, highPercent: config.gc.policy.diskHighThresholdPercent, lowPercent: config.gc.policy.diskLowThresholdPercent, storageDir: r.storageDir };
    const announcer = new HostAnnouncer(schedulers, host, r.announceIntervalMs, log);
    // A scheduler that comes back (restarted) knows no hosts: it learns ours before our tasks go there.
    schedulers.beforeRejoin = (addr) => announcer.announceTo(addr);
    let channel: CommandChannel | undefined;
    if (config.manager.addr) {
      const clientConfig = new ClientConfigApplier(bandwidth, localBandwidth, log);
      // Schedulers from the manager (Dragonfly's dynconfig); new ones learn this host at once.
      const dynconfig = new Dynconfig(
        {
          managerAddr: config.manager.addr,
          refreshIntervalMs: r.dynconfigRefreshIntervalMs,
          hostname: r.hostname,
          ip: r.ip,
          idc: config.host.idc,
          location: config.host.location,
          schedulerClusterId: config.host.schedulerClusterID,
          seedPeer: seed,
          managerCredentials,
          onClientConfig: (raw) => clientConfig.apply(raw),
        },
        schedulers,
        log,
        async () => {
          await announcer.announce();
          // A new list may be another cluster's: the command channel's Hello names it.
          channel?.rehello();
        },
      );
      await dynconfig.refresh();
      dynconfig.start();
      closers.push(() => dynconfig.stop());
      // The manager's commands (issue 25) come down a stream this daemon holds open.
      const executor = new CommandExecutor({
        storage,
        gc: () => runGc(storage, tasks, gcPolicy, log, metrics),
        log,
        refresh: async () => {
          const changed = await dynconfig.refresh();
          if (changed) await announcer.announce();
          return { schedulers: schedulers.all().map(([a]) => a), changed };
        },
      });
      channel = new CommandChannel(
        {
          managerAddr: config.manager.addr,
          credentials: managerCredentials,
          hello: () => ({ hostId, hostname: r.hostname, ip: r.ip, seedPeer: seed, schedulerClusterId: config.host.schedulerClusterID || dynconfig.clusterId, version: VERSION }),
        },
        executor,
        log.child({ part: "command-channel" }),
      );
      const started = channel;
      started.start();
      closers.push(() => started.stop());
    }
    // The scheduler refuses peers of hosts it does not know: announce before serving dfget.
    if (schedulers.size > 0) await announcer.announce();
    announcer.start();
    closers.push(() => announcer.stop());
    schedulers.startHealthChecks(r.schedulerHealthCheckIntervalMs);

    // The download socket is accepted by unix-callers.ts so each call knows who called (SO_PEERCRED).
    await mkdir(dirname(r.socketPath), { recursive: true });
    await rm(r.socketPath, { force: true });
    // Calls only arrive once the socket below serves, so `socket` is set by then.
    const download = new DownloadService({ storage, backends: backends.local, tasks, log, hostId, newPeerId, callerOf: (call) => socket.callerOf(call) });
    const downloadGrpc = createGrpcServer([{ definition: DfdaemonDownloadService, implementation: instrumentService(DfdaemonDownloadService, download.handlers(), registry) }], log.child({ part: "download-grpc" }));
    const socket: UnixCallersSocket = await serveUnixCallers(downloadGrpc.server, r.socketPath, Number.parseInt(config.download.server.socketMode, 8), log.child({ part: "download-socket" }));
    // The socket stops accepting and waits for its connections, which the gRPC shutdown ends.
    closers.push(async () => {
      await Promise.all([socket.close(), closeGrpcServer(downloadGrpc.server)]);
    });

    const health: HealthServer = await serveHealth(config.health.server.ip, config.health.server.port, () => true);
    closers.push(() => health.close());
    const metricsServer: MetricsServer = await serveMetrics(registry, config.metrics.server.ip, config.metrics.server.port);
    closers.push(() => metricsServer.close());

    const gcLoop = startGc(storage, tasks, gcPolicy, r.gcIntervalMs, log, metrics);
    closers.push(() => gcLoop.stop());
    const scrubber = new Scrubber(storage, tasks, { rateBytesPerSecond: r.scrubRateBytes }, log.child({ part: "scrub" }), metrics);
    const scrubLoop = startScrub(scrubber, r.scrubIntervalMs, log);
    closers.push(() => scrubLoop.stop());

    log.info({ hostId, sealing: atRest.sealing ? config.storage.encryption : "off", uploadPort, piecePort: pieceServer.port, pieceTls: piecePem ? (allowPlaintext ? "optional" : "required") : "off", quicPort: pieceServer.quicPort, socket: r.socketPath, seedPeer: seed, schedulers: config.scheduler.addrs }, "dfdaemon started");
    return {
      hostId,
      uploadPort,
      piecePort: pieceServer.port,
      quicPort: pieceServer.quicPort,
      pieceServerStats: () => pieceServer.stats(),
      healthPort: health.port,
      metricsPort: metricsServer.port,
      proxyPort,
      socketPath: r.socketPath,
      tasks,
      storage,
      schedulers,
      bandwidth,
      gc: () => runGc(storage, tasks, gcPolicy, log, metrics),
      scrub: () => scrubber.pass(),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
