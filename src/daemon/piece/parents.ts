// Upload-service clients for parents, shared by all downloads, and the per-piece choice of a
// parent weighted by its spare upload bandwidth (what the parent's SyncHost stream reports),
// so a busy parent gets fewer of our piece requests.
import { credentials, type ChannelCredentials } from "@grpc/grpc-js";
import { MAX_MESSAGE_BYTES } from "../../common/grpc/server.js";
import { DfdaemonUploadClient } from "../../gen/dfdaemon/v2/dfdaemon.js";

export type UploadClient = InstanceType<typeof DfdaemonUploadClient>;

/** Unknown bandwidth counts as 10 Gbit/s, as Dragonfly's parent selector assumes. */
export const DEFAULT_WEIGHT = 10_000_000_000 / 8;

export function spareBandwidthWeight(maxTx: number | undefined, tx: number | undefined): number {
  if (!maxTx) return DEFAULT_WEIGHT;
  return Math.max(maxTx - (tx ?? 0), maxTx / 10);
}

/** Weighted random choice; `weights` are positive. */
export function pickWeighted<T>(items: readonly T[], weight: (t: T) => number, random = Math.random): T | undefined {
  const total = items.reduce((s, t) => s + weight(t), 0);
  if (items.length === 0 || !(total > 0)) return items[0];
  let r = random() * total;
  for (const t of items) {
    r -= weight(t);
    if (r < 0) return t;
  }
  return items[items.length - 1];
}

export class UploadClientPool {
  private readonly clients = new Map<string, UploadClient>();

  /** `creds`: upload.client's certificate towards parents' upload servers (plaintext without). */
  constructor(private readonly creds: ChannelCredentials = credentials.createInsecure()) {}

  get(ip: string, port: number): UploadClient {
    const addr = ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
    let c = this.clients.get(addr);
    if (!c) {
      c = new DfdaemonUploadClient(addr, this.creds, {
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        "grpc.initial_reconnect_backoff_ms": 200,
        "grpc.max_reconnect_backoff_ms": 2000,
      });
      this.clients.set(addr, c);
    }
    return c;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
