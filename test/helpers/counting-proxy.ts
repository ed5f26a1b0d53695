// A TCP proxy on 127.0.0.1 in front of a server, counting the bytes the server sent through it:
// what an object store served, whatever its own metrics say (or do not).
import { createConnection, createServer, type Server, type Socket } from "node:net";

export interface CountingProxy {
  port: number;
  /** Bytes the upstream sent to clients so far (headers included). */
  served(): number;
  close(): Promise<void>;
}

export async function startCountingProxy(upstreamPort: number): Promise<CountingProxy> {
  let served = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: "127.0.0.1", port: upstreamPort });
    sockets.add(client).add(upstream);
    upstream.on("data", (b: Buffer) => (served += b.length));
    client.pipe(upstream);
    upstream.pipe(client);
    const done = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", done).on("close", done);
    upstream.on("error", done).on("close", done);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    served: () => served,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
