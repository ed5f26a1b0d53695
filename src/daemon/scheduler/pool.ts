// The schedulers this daemon talks to. A task always goes to the same scheduler (consistent
// hash of the first five task-id characters, as Dragonfly's clients key it), because
// schedulers do not share task state: two schedulers for one task would split the swarm.
// A scheduler that is gone (its stream or connection failed, or its health check did) leaves
// the ring at once, so its tasks hash to the next one; it rejoins when a health check passes
// (issue 26). Health never empties the ring: with every scheduler down, all stay on it, and
// a download fails with what is really wrong rather than "no scheduler".
import { credentials as grpcCredentials, status, type ChannelCredentials } from "@grpc/grpc-js";
import type { Logger } from "../../common/logger.js";
import { HashRing } from "../../common/hashring.js";
import { checkServing } from "../../common/grpc/health.js";
import { MAX_MESSAGE_BYTES } from "../../common/grpc/server.js";
import { errorMessage } from "../../common/errors.js";
import { tracingClientOptions } from "../../common/tracing.js";
import { SchedulerClient } from "../../gen/scheduler/v2/scheduler.js";

export type Scheduler = InstanceType<typeof SchedulerClient>;

/**
 * Whether a gRPC failure means the scheduler is gone (down, unreachable, its connection cut),
 * as opposed to an answer of a scheduler that is up (a refusal, a scheduling decision).
 */
export function schedulerGone(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === status.UNAVAILABLE;
}

/** Deadline of one health check (ms): a scheduler slower than this to answer is as good as down. */
const HEALTH_CHECK_TIMEOUT_MS = 3000;

export class SchedulerPool {
  private readonly clients = new Map<string, Scheduler>();
  /** Configured (or dynconfig's) order: ring membership follows it, as HashRing resolves point collisions by order. */
  private addrs: string[] = [];
  /** Schedulers off the ring until a health check passes. */
  private readonly down = new Set<string>();
  private ring = new HashRing();
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private closed = false;
  /**
   * Runs before a scheduler that was down rejoins the ring; false keeps it down until the
   * next check. The daemon announces its host there: a restarted scheduler knows no hosts,
   * and would refuse every peer of ours ("host not found") until the next announceInterval.
   */
  beforeRejoin: (addr: string) => Promise<boolean> = () => Promise.resolve(true);

  constructor(
    addrs: readonly string[],
    /** The `scheduler` section's caCert/cert/key; plaintext when absent. */
    readonly credentials: ChannelCredentials = grpcCredentials.createInsecure(),
    private readonly log?: Logger,
  ) {
    this.set(addrs);
  }

  /** Replaces the scheduler list (from config or the manager's ListSchedulers). */
  set(addrs: readonly string[]): void {
    for (const [addr, c] of this.clients) {
      if (!addrs.includes(addr)) {
        c.close();
        this.clients.delete(addr);
        this.down.delete(addr);
      }
    }
    for (const addr of addrs) {
      if (!this.clients.has(addr)) {
        this.clients.set(
          addr,
          new SchedulerClient(addr, this.credentials, {
            "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
            "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
            "grpc.keepalive_time_ms": 300_000,
            "grpc.keepalive_timeout_ms": 20_000,
            "grpc.initial_reconnect_backoff_ms": 200,
            "grpc.max_reconnect_backoff_ms": 2000,
            ...tracingClientOptions(),
          }),
        );
      }
    }
    this.addrs = [...new Set(addrs)];
    this.rebuild();
  }

  get size(): number {
    return this.clients.size;
  }

  all(): Array<[string, Scheduler]> {
    return [...this.clients];
  }

  get(addr: string): Scheduler | undefined {
    return this.clients.get(addr);
  }

  /** The schedulers on the ring now (the healthy ones, or all when none is). */
  members(): string[] {
    const up = this.addrs.filter((a) => !this.down.has(a));
    return up.length > 0 ? up : [...this.addrs];
  }

  isDown(addr: string): boolean {
    return this.down.has(addr);
  }

  /**
   * The scheduler for a task: the ring's choice, or, with `except` (schedulers this download
   * already lost), the choice of the ring without them, which is where their tasks moved.
   */
  forTask(taskId: string, except?: ReadonlySet<string>): { addr: string; client: Scheduler } | undefined {
    const ring = except && except.size > 0 ? new HashRing(this.members().filter((a) => !except.has(a))) : this.ring;
    const addr = ring.get(taskId.slice(0, 5));
    const client = addr === undefined ? undefined : this.clients.get(addr);
    return addr !== undefined && client ? { addr, client } : undefined;
  }

  /**
   * After a task's conversation with `addr` failed because the scheduler is gone: takes it
   * off the ring, counts it in `lost` (the schedulers this download lost), and returns the
   * scheduler the task moved to, or undefined when every scheduler was tried.
   */
  failover(taskId: string, addr: string, err: unknown, lost: Set<string>): { addr: string; client: Scheduler } | undefined {
    this.markDown(addr, errorMessage(err));
    lost.add(addr);
    return this.forTask(taskId, lost);
  }

  /** Takes a scheduler off the ring at once (its stream or connection failed). */
  markDown(addr: string, reason: string): void {
    if (!this.clients.has(addr) || this.down.has(addr)) return;
    this.down.add(addr);
    this.rebuild();
    this.log?.warn({ scheduler: addr, reason, ring: this.members() }, "scheduler is down; its tasks move to the next scheduler");
  }

  private markUp(addr: string): void {
    if (!this.down.delete(addr)) return;
    this.rebuild();
    this.log?.info({ scheduler: addr, ring: this.members() }, "scheduler is back; it rejoins the ring");
  }

  private rebuild(): void {
    this.ring = new HashRing(this.members());
  }

  /**
   * Health-checks every scheduler once: a failing one leaves the ring, a passing one that
   * was down rejoins (after beforeRejoin). Concurrent calls share one sweep.
   */
  checkHealth(): Promise<void> {
    this.checking ??= this.sweep().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async sweep(): Promise<void> {
    await Promise.all(
      [...this.addrs].map(async (addr) => {
        const ok = await checkServing(addr, this.credentials, HEALTH_CHECK_TIMEOUT_MS);
        if (this.closed || !this.clients.has(addr)) return;
        if (!ok) return this.markDown(addr, "health check failed");
        if (!this.down.has(addr)) return;
        const ready = await this.beforeRejoin(addr).catch((e: unknown) => {
          this.log?.warn({ scheduler: addr, err: errorMessage(e) }, "scheduler passed its health check but could not be readied; it stays down");
          return false;
        });
        if (ready && !this.closed) this.markUp(addr);
      }),
    );
  }

  /** Checks every `intervalMs` (scheduler.healthCheckInterval) until close; 0 disables. */
  startHealthChecks(intervalMs: number): void {
    if (intervalMs <= 0 || this.closed) return;
    const schedule = () => {
      this.timer = setTimeout(() => void this.checkHealth().finally(() => (this.closed ? undefined : schedule())), intervalMs);
      this.timer.unref();
    };
    schedule();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
