// Port choice for `damselfly up`: Dragonfly's default ports when they are free on 127.0.0.1, an
// ephemeral port (0) when something else holds them, so a second stack or a busy laptop still
// starts. The component reports the port it really bound.
import { createServer } from "node:net";

/** True when host:port can be bound right now (another process may still take it later). */
export function isPortFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Hands out preferred ports once each: a taken or already handed-out port becomes 0. */
export class PortPlan {
  private readonly claimed = new Set<number>();

  async pick(preferred: number, host = "127.0.0.1"): Promise<number> {
    if (preferred <= 0 || this.claimed.has(preferred)) return 0;
    this.claimed.add(preferred);
    return (await isPortFree(preferred, host)) ? preferred : 0;
  }
}
