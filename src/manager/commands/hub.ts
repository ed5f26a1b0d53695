// The daemons connected to this manager's command channel (grpc/host-commands.ts), by host id,
// and the commands waiting for their answers. One stream per host: a daemon that reconnects
// (restart, network change) replaces its older stream, whose waiting commands fail at once.
// A command sent to a host answers exactly once: the host's result, its disconnection, or the
// deadline, whichever comes first; nothing waits forever.
import { errorMessage } from "../../common/errors.js";
import type { Command, CommandResult } from "../../gen/damselfly/manager/v1/commands.js";

export interface HostConnection {
  readonly hostId: string;
  readonly hostname: string;
  readonly ip: string;
  readonly seedPeer: boolean;
  /** The scheduler clusters the host is in, each with its tenant (the manager's record under mTLS). */
  readonly clusters: ReadonlyMap<number, number>;
  readonly connectedAt: Date;
  /** Writes a command down the host's stream. */
  send(command: Command): void;
}

/** How a command ended on one host. */
export type Outcome = { ok: true; result: CommandResult } | { ok: false; error: string };

interface Waiter {
  conn: HostConnection;
  done(o: Outcome): void;
}

export class CommandHub {
  private readonly hosts = new Map<string, HostConnection>();
  /** By `${commandId}/${hostId}`. */
  private readonly waiting = new Map<string, Waiter>();

  /** Registers a host's stream; returns what to call when that stream ends. */
  attach(conn: HostConnection): () => void {
    const older = this.hosts.get(conn.hostId);
    if (older) this.failAll(older, `host ${conn.hostId} reconnected before answering`);
    this.hosts.set(conn.hostId, conn);
    return () => {
      if (this.hosts.get(conn.hostId) === conn) this.hosts.delete(conn.hostId);
      this.failAll(conn, `host ${conn.hostId} disconnected before answering`);
    };
  }

  connected(): HostConnection[] {
    return [...this.hosts.values()];
  }

  host(hostId: string): HostConnection | undefined {
    return this.hosts.get(hostId);
  }

  /** The connected hosts of a scheduler cluster. */
  ofCluster(clusterId: number): HostConnection[] {
    return this.connected().filter((c) => c.clusters.has(clusterId));
  }

  /** Sends `command` to a connected host and resolves with its outcome; never rejects. */
  dispatch(conn: HostConnection, command: Command, timeoutMs: number): Promise<Outcome> {
    const key = `${command.id}/${conn.hostId}`;
    return new Promise<Outcome>((resolve) => {
      const timer = setTimeout(() => finish({ ok: false, error: `host ${conn.hostId} did not answer within ${timeoutMs / 1000}s` }), timeoutMs);
      timer.unref();
      const finish = (o: Outcome) => {
        if (this.waiting.get(key)?.done !== finish) return;
        this.waiting.delete(key);
        clearTimeout(timer);
        resolve(o);
      };
      this.waiting.set(key, { conn, done: finish });
      try {
        conn.send(command);
      } catch (e) {
        finish({ ok: false, error: `sending to host ${conn.hostId} failed: ${errorMessage(e)}` });
      }
    });
  }

  /** A result that came up `conn`'s stream; one for a command it was not sent is ignored. */
  answer(conn: HostConnection, result: CommandResult): void {
    const w = this.waiting.get(`${result.commandId}/${conn.hostId}`);
    if (!w || w.conn !== conn) return;
    w.done(result.error ? { ok: false, error: result.error } : { ok: true, result });
  }

  private failAll(conn: HostConnection, error: string): void {
    for (const w of [...this.waiting.values()]) if (w.conn === conn) w.done({ ok: false, error });
  }
}
