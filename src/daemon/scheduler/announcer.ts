// Keeps every scheduler informed of this host: AnnounceHost at start and every
// announceInterval (a host silent for 2× its interval is reclaimed with its peers), DeleteHost
// on shutdown. A scheduler that is down is retried on the next tick; downloads meanwhile fall
// back to the origin.
import { Metadata } from "@grpc/grpc-js";
import type { Logger } from "../../common/logger.js";
import type { Host } from "../../gen/common/v2/common.js";
import { schedulerGone, type Scheduler, type SchedulerPool } from "./pool.js";

export class HostAnnouncer {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pool: SchedulerPool,
    private readonly host: () => Host,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  /** Announces to all schedulers; resolves with how many accepted. */
  async announce(): Promise<number> {
    const results = await Promise.all(this.pool.all().map(([addr, client]) => this.announceOne(addr, client)));
    return results.filter(Boolean).length;
  }

  /** Announces to one scheduler (one rejoining the pool's ring); resolves whether it accepted. */
  announceTo(addr: string): Promise<boolean> {
    const client = this.pool.get(addr);
    return client ? this.announceOne(addr, client) : Promise.resolve(false);
  }

  private announceOne(addr: string, client: Scheduler): Promise<boolean> {
    const host = this.host();
    const interval = { seconds: Math.floor(this.intervalMs / 1000), nanos: (this.intervalMs % 1000) * 1e6 };
    return new Promise<boolean>((resolve) => {
      client.announceHost({ host, interval }, new Metadata(), { deadline: Date.now() + 10_000 }, (err) => {
        if (err) {
          this.log.warn({ scheduler: addr, err: err.message }, "announce host failed");
          // Unreachable: off the ring until a health check passes, when it is announced to again.
          if (schedulerGone(err)) this.pool.markDown(addr, err.message);
        }
        resolve(!err);
      });
    });
  }

  /** Re-announces every interval; the first announcement is the caller's (awaited at start). */
  start(): void {
    const schedule = () => {
      this.timer = setTimeout(() => void this.announce().finally(schedule), this.intervalMs);
      this.timer.unref();
    };
    schedule();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    const hostId = this.host().id;
    await Promise.all(
      this.pool.all().map(
        ([, client]) => new Promise<void>((resolve) => client.deleteHost({ hostId }, new Metadata(), { deadline: Date.now() + 2000 }, () => resolve())),
      ),
    );
  }
}
