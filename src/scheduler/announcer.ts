// Registration with the manager, as Dragonfly's scheduler does it: UpdateScheduler once at
// start (failure aborts startup), then a client-streaming KeepAlive carrying one message per
// interval; when the stream breaks it is reopened after one interval, forever, until closed.
// The same channel reads the scheduler's own record back (GetScheduler, for dynconfig.ts).
import { credentials, Metadata, type ChannelCredentials, type ClientWritableStream } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { ManagerClient, SourceType, type KeepAliveRequest, type Scheduler } from "../gen/manager/v2/manager.js";

export interface AnnouncerOptions {
  managerAddr: string;
  hostname: string;
  ip: string;
  port: number;
  idc: string;
  location: string;
  schedulerClusterId: number;
  /** ms */
  keepAliveInterval: number;
  features: string[];
  /** manager.tls; plaintext when not given. */
  credentials?: ChannelCredentials;
}

export class ManagerAnnouncer {
  private readonly client: InstanceType<typeof ManagerClient>;
  private stream: ClientWritableStream<KeepAliveRequest> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly opts: AnnouncerOptions,
    private readonly log: Logger,
  ) {
    this.client = new ManagerClient(opts.managerAddr, opts.credentials ?? credentials.createInsecure());
  }

  /** UpdateScheduler; rejects when the manager refuses or is unreachable (10 s). */
  register(): Promise<void> {
    const o = this.opts;
    // Go encodes time.Duration as integer nanoseconds.
    const config = Buffer.from(JSON.stringify({ manager_keep_alive_interval: Math.round(o.keepAliveInterval * 1e6) }));
    return new Promise((resolve, reject) => {
      this.client.updateScheduler(
        { sourceType: SourceType.SCHEDULER_SOURCE, hostname: o.hostname, ip: o.ip, port: o.port, idc: o.idc, location: o.location, schedulerClusterId: o.schedulerClusterId, features: o.features, config },
        new Metadata(),
        { deadline: Date.now() + 10_000 },
        (err) => (err ? reject(new Error(`manager ${o.managerAddr}: UpdateScheduler failed: ${err.message}`)) : resolve()),
      );
    });
  }

  /** GetScheduler: this scheduler's record with its cluster (config, client_config), for dynconfig.ts. */
  getScheduler(timeoutMs = 10_000): Promise<Scheduler> {
    const o = this.opts;
    return new Promise((resolve, reject) => {
      this.client.getScheduler(
        { sourceType: SourceType.SCHEDULER_SOURCE, hostname: o.hostname, ip: o.ip, schedulerClusterId: o.schedulerClusterId },
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, res) => (err ? reject(new Error(`manager ${o.managerAddr}: GetScheduler failed: ${err.message}`)) : resolve(res)),
      );
    });
  }

  startKeepAlive(): void {
    const msg: KeepAliveRequest = { sourceType: SourceType.SCHEDULER_SOURCE, hostname: this.opts.hostname, clusterId: this.opts.schedulerClusterId, ip: this.opts.ip };
    const open = () => {
      if (this.closed) return;
      const stream = this.client.keepAlive((err) => {
        if (err && !this.closed) this.log.warn({ err: err.message }, "manager keepalive stream ended");
      });
      stream.on("error", () => undefined);
      this.stream = stream;
      stream.write(msg);
    };
    open();
    this.timer = setInterval(() => {
      const s = this.stream;
      if (!s || s.destroyed || s.writableEnded || s.writableFinished) {
        open();
        return;
      }
      s.write(msg);
    }, this.opts.keepAliveInterval);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.stream?.end();
    this.client.close();
  }
}
