// The schedulers this daemon talks to. A task always goes to the same scheduler (consistent
// hash of the first five task-id characters, as Dragonfly's clients key it), because
// schedulers do not share task state: two schedulers for one task would split the swarm.
import { credentials as grpcCredentials, type ChannelCredentials } from "@grpc/grpc-js";
import { HashRing } from "../../common/hashring.js";
import { MAX_MESSAGE_BYTES } from "../../common/grpc/server.js";
import { SchedulerClient } from "../../gen/scheduler/v2/scheduler.js";

export type Scheduler = InstanceType<typeof SchedulerClient>;

export class SchedulerPool {
  private readonly clients = new Map<string, Scheduler>();
  private ring = new HashRing();

  constructor(
    addrs: readonly string[],
    /** The `scheduler` section's caCert/cert/key; plaintext when absent. */
    readonly credentials: ChannelCredentials = grpcCredentials.createInsecure(),
  ) {
    this.set(addrs);
  }

  /** Replaces the scheduler list (from config or the manager's ListSchedulers). */
  set(addrs: readonly string[]): void {
    for (const [addr, c] of this.clients) {
      if (!addrs.includes(addr)) {
        c.close();
        this.clients.delete(addr);
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
          }),
        );
      }
    }
    this.ring = new HashRing(addrs);
  }

  get size(): number {
    return this.clients.size;
  }

  all(): Array<[string, Scheduler]> {
    return [...this.clients];
  }

  forTask(taskId: string): { addr: string; client: Scheduler } | undefined {
    const addr = this.ring.get(taskId.slice(0, 5));
    const client = addr === undefined ? undefined : this.clients.get(addr);
    return addr !== undefined && client ? { addr, client } : undefined;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
