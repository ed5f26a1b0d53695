// The daemon's end of the manager's command channel (issue 25): with `manager.addr` set, one
// long-lived HostCommands.Connect stream, opened by the daemon (so a manager reaches daemons
// behind NAT or firewalls it could not dial), its first message a Hello saying who we are,
// then one result per command the manager sends. A stream that ends or fails is reopened
// after a backoff (doubling from 1 s to 30 s, with jitter so a restarted manager is not hit
// by every daemon at once; back to 1 s once a stream lived a minute). Commands run one at a
// time, in the order they came. When what the Hello says changes (the scheduler cluster the
// daemon learnt from dynconfig), the stream is reopened with the new Hello: a plaintext manager
// knows the daemon's cluster only from it.
import { credentials, Metadata, type ChannelCredentials, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { errorMessage } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import { HostCommandsClient, type Command, type CommandChannelRequest, type Hello } from "../../gen/damselfly/manager/v1/commands.js";
import type { CommandExecutor } from "./commands.js";

const MIN_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
/** A stream that lived this long was a working connection: the next failure retries soon. */
const HEALTHY_STREAM_MS = 60_000;

export interface CommandChannelOptions {
  managerAddr: string;
  /** The `manager` section's mTLS credentials; plaintext when absent. */
  credentials?: ChannelCredentials;
  /** Who we are, read at each (re)connect: the cluster may be known only after dynconfig's first answer. */
  hello(): Hello;
}

export class CommandChannel {
  private readonly client: InstanceType<typeof HostCommandsClient>;
  private call: ClientDuplexStream<CommandChannelRequest, Command> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private backoffMs = MIN_BACKOFF_MS;
  /** The Hello the current stream opened with (JSON), to see when it changed. */
  private sentHello = "";
  private reopenNow = false;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly opts: CommandChannelOptions,
    private readonly executor: CommandExecutor,
    private readonly log: Logger,
  ) {
    // Keepalive pings find a stream a NAT or load balancer dropped silently; every 5 minutes is
    // what a grpc-js or grpc-go server accepts by default.
    this.client = new HostCommandsClient(opts.managerAddr, opts.credentials ?? credentials.createInsecure(), { "grpc.keepalive_time_ms": 300_000, "grpc.keepalive_timeout_ms": 20_000 });
  }

  start(): void {
    this.open();
  }

  private open(): void {
    if (this.stopped) return;
    const openedAt = Date.now();
    const call = this.client.connect(new Metadata());
    this.call = call;
    let ended = false;
    const reconnect = (why: string) => {
      if (ended) return;
      ended = true;
      if (this.call === call) this.call = undefined;
      if (this.stopped) return;
      if (this.reopenNow) {
        this.reopenNow = false;
        this.open();
        return;
      }
      if (Date.now() - openedAt >= HEALTHY_STREAM_MS) this.backoffMs = MIN_BACKOFF_MS;
      const delay = Math.round(this.backoffMs * (0.5 + Math.random() / 2));
      this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
      this.log.warn({ manager: this.opts.managerAddr, err: why, retryInMs: delay }, "command channel to the manager closed; reconnecting");
      this.timer = setTimeout(() => this.open(), delay);
      this.timer.unref();
    };
    call.on("data", (cmd: Command) => {
      this.queue = this.queue
        .then(async () => {
          const result = await this.executor.run(cmd);
          if (!ended) call.write({ request: { $case: "result", result } });
          // After the answer is out: a refresh_config may have told us our cluster.
          this.rehello();
        })
        // One command's failure to answer must not skip every later one (a rejected link would).
        .catch((e: unknown) => this.log.warn({ commandId: cmd.id, err: errorMessage(e) }, "manager command: the answer could not be sent"));
    });
    call.on("error", (e: ServiceError) => reconnect(e.details || e.message));
    call.on("end", () => reconnect("the manager ended the stream"));
    const h = this.opts.hello();
    this.sentHello = JSON.stringify(h);
    call.write({ request: { $case: "hello", hello: h } });
  }

  /** Reopens the stream at once when the Hello would say something else than it did. */
  rehello(): void {
    if (this.stopped || !this.call || JSON.stringify(this.opts.hello()) === this.sentHello) return;
    this.reopenNow = true;
    // A half-close, not a cancel: results still being written go out first, and the manager
    // ends the stream once it read them.
    this.call.end();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.call?.cancel();
    await this.queue.catch(() => undefined);
    this.client.close();
  }
}
