// The piece connections of ours to a parent outlive the download that made them: the native
// pool keeps up to 8 idle ones per address for 30 s (so the next piece, or the next task from
// the same parent, skips the connect and the TLS handshake), and the parent holds a socket for
// each. Once no running download uses a parent any more (its rounds ended: the task is done,
// failed, or went back to the scheduler for other parents), nothing would ask for them again,
// so they are closed at once (issue 19), as grpc-go's and Dragonfly's clients drop theirs.
import type { ParentAddress } from "./types.js";

/** `ip:port`, with IPv6 addresses in brackets. */
export function addrOf(parent: ParentAddress): string {
  return parent.ip.includes(":") ? `[${parent.ip}]:${parent.port}` : `${parent.ip}:${parent.port}`;
}

/** The parent addresses one round of a download asked; ended once, when the round is over. */
export interface RoundLinks {
  use(parent: ParentAddress): void;
  end(): void;
}

/** Counts the running rounds that use each parent address, daemon-wide. */
export class ParentLinks {
  private readonly users = new Map<string, number>();

  /** `closeIdle(addr)` closes the idle connections to `addr` (TCP, TLS and QUIC alike). */
  constructor(private readonly closeIdle: (addr: string) => number) {}

  round(): RoundLinks {
    const mine = new Set<string>();
    let ended = false;
    return {
      use: (parent) => {
        const addr = addrOf(parent);
        if (ended || mine.has(addr)) return;
        mine.add(addr);
        this.users.set(addr, (this.users.get(addr) ?? 0) + 1);
      },
      end: () => {
        if (ended) return;
        ended = true;
        for (const addr of mine) this.release(addr);
      },
    };
  }

  /** Addresses some running round uses (tests and stats). */
  inUse(): string[] {
    return [...this.users.keys()];
  }

  private release(addr: string): void {
    const n = (this.users.get(addr) ?? 1) - 1;
    if (n > 0) {
      this.users.set(addr, n);
      return;
    }
    this.users.delete(addr);
    this.closeIdle(addr);
  }
}
