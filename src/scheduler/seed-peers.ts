// Seed peers: hosts announced with a non-normal type. They are kept on a consistent-hash ring
// keyed by "ip:port" (the Go scheduler's choice, so a task maps to the same seed under either
// scheduler), health-checked periodically, and asked to fetch a task from the origin with
// DfdaemonUpload.DownloadTask(need_back_to_source = true).
import { credentials, Metadata, type ChannelCredentials, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { HashRing } from "../common/hashring.js";
import { HealthClient } from "../common/grpc/health.js";
import { tracingClientOptions } from "../common/tracing.js";
import type { Download } from "../gen/common/v2/common.js";
import { DfdaemonUploadClient, type DownloadTaskResponse } from "../gen/dfdaemon/v2/dfdaemon.js";
import { HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health.js";
import type { Host } from "./resource/host.js";
import type { Resource } from "./resource/resource.js";

export function hostAddress(host: Host): string {
  const ip = host.ip.includes(":") ? `[${host.ip}]` : host.ip;
  return `${ip}:${host.message.port}`;
}

export interface SeedPeerOptions {
  /** ms; DownloadTask deadline. */
  taskDownloadTimeout: number;
  /** ms; 0 disables the periodic health sweep. */
  healthCheckInterval: number;
  /** Towards seed peers' upload servers (seedPeer.tls); plaintext when not given. */
  credentials?: ChannelCredentials;
}

export interface TriggerResult {
  host: Host;
  done: Promise<void>;
}

export class SeedPeers {
  private readonly ring = new HashRing();
  private readonly byAddress = new Map<string, Host>();
  /** Seeds that failed their last health check stay off the ring until they pass again. */
  private readonly unhealthy = new Set<string>();
  private readonly uploadClients = new Map<string, InstanceType<typeof DfdaemonUploadClient>>();
  private readonly inflight = new Set<ClientReadableStream<DownloadTaskResponse>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly resource: Resource,
    private readonly options: SeedPeerOptions,
    private readonly log: Logger,
  ) {}

  private get credentials(): ChannelCredentials {
    return this.options.credentials ?? credentials.createInsecure();
  }

  start(): void {
    if (this.options.healthCheckInterval > 0) {
      this.timer = setInterval(() => void this.refresh(), this.options.healthCheckInterval);
      this.timer.unref();
    }
  }

  /** Seed hosts known to the resource and not marked unhealthy. */
  private seeds(): Host[] {
    return [...this.resource.hosts.values()].filter((h) => h.isSeed && !this.unhealthy.has(h.id));
  }

  /**
   * Rebuilds the ring from the announced seeds; called whenever a seed host changes. Each seed
   * on the ring is connected to at once: the first trigger of a task is on every peer's
   * critical path (peers wait for the seed's first piece), and opening the channel then added
   * about 70 ms to it in the swarm harness.
   */
  sync(): void {
    this.byAddress.clear();
    for (const h of this.seeds()) this.byAddress.set(hostAddress(h), h);
    this.ring.set(this.byAddress.keys());
    for (const addr of this.byAddress.keys()) this.client(addr).getChannel().getConnectivityState(true);
  }

  hasAvailable(): boolean {
    return this.ring.size > 0;
  }

  /**
   * The seed responsible for `taskId`, or undefined when none is available. Seeds in `except`
   * (hosts that already failed the task) are taken off the ring for this choice, so the task
   * goes where it would if they had left.
   */
  select(taskId: string, except?: ReadonlySet<string>): Host | undefined {
    let ring = this.ring;
    if (except && except.size > 0) ring = new HashRing([...this.byAddress].filter(([, h]) => !except.has(h.id)).map(([addr]) => addr));
    const addr = ring.get(taskId);
    const host = addr === undefined ? undefined : this.byAddress.get(addr);
    // A host object replaced or removed since the last sync is not offered.
    return host && this.resource.hosts.get(host.id) === host ? host : undefined;
  }

  /**
   * A seed announced itself: it is running and reached us, so one that failed its last health
   * check (a seed restarted after a crash) is back on the ring at once rather than at the next
   * sweep, up to healthCheckInterval later; a sweep takes it off again if it still fails.
   */
  announced(host: Host): void {
    this.unhealthy.delete(host.id);
    this.sync();
  }

  /** Health-checks every seed (service ""); failing ones leave the ring until they pass. */
  async refresh(): Promise<void> {
    const seeds = [...this.resource.hosts.values()].filter((h) => h.isSeed);
    await Promise.all(
      seeds.map(async (h) => {
        const ok = await this.check(hostAddress(h));
        if (ok) this.unhealthy.delete(h.id);
        else this.unhealthy.add(h.id);
      }),
    );
    for (const id of this.unhealthy) if (!this.resource.hosts.has(id)) this.unhealthy.delete(id);
    this.sync();
  }

  /**
   * Health-checks on a connection of its own: the trigger channel of a seed that was down a
   * while backs off reconnecting (up to two minutes), and a check on it would keep a seed that
   * came back off the ring until then.
   */
  private check(addr: string): Promise<boolean> {
    return new Promise((resolve) => {
      const client = new HealthClient(addr, this.credentials);
      client.check({ service: "" }, new Metadata(), { deadline: Date.now() + 3000 }, (err, res) => {
        client.close();
        resolve(!err && res?.status === HealthCheckResponse_ServingStatus.SERVING);
      });
    });
  }

  private client(addr: string): InstanceType<typeof DfdaemonUploadClient> {
    let c = this.uploadClients.get(addr);
    if (!c) {
      c = new DfdaemonUploadClient(addr, this.credentials, { "grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1, ...tracingClientOptions() });
      this.uploadClients.set(addr, c);
    }
    return c;
  }

  /**
   * Asks `host` (or the ring's choice for the task) to download the task from the origin.
   * Resolves `done` when the seed's stream ends OK, rejects with its error otherwise; the
   * response contents are not needed (the seed reports progress through AnnouncePeer).
   */
  trigger(taskId: string, download: Download, host?: Host, needBackToSource = true): TriggerResult | undefined {
    const target = host ?? this.select(taskId);
    if (!target) return undefined;
    const addr = hostAddress(target);
    const request = { download: { ...download, needBackToSource, outputPath: undefined } };
    const call = this.client(addr).downloadTask(request, new Metadata(), { deadline: Date.now() + this.options.taskDownloadTimeout });
    this.inflight.add(call);
    const done = new Promise<void>((resolve, reject) => {
      call.on("data", () => undefined);
      call.on("end", () => {
        this.inflight.delete(call);
        resolve();
      });
      call.on("error", (err: ServiceError) => {
        this.inflight.delete(call);
        reject(err);
      });
    });
    this.log.info({ taskId, seed: target.id, addr }, "seed peer triggered");
    return { host: target, done };
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const call of this.inflight) call.cancel();
    this.inflight.clear();
    for (const c of this.uploadClients.values()) c.close();
    this.uploadClients.clear();
  }
}
