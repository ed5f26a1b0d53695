// Prometheus metrics: one registry per process (so several components in one test process do
// not collide) served on its own HTTP port, as Dragonfly does (8000 for scheduler/manager,
// 4002 for dfdaemon).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";

export function createRegistry(withDefaults = true): Registry {
  const registry = new Registry();
  if (withDefaults) collectDefaultMetrics({ register: registry });
  return registry;
}

const MIB = 1024 * 1024;
/**
 * Upper bounds (exclusive) of Dragonfly's task size levels 1.. — the same bands in the
 * scheduler (metrics.CalculateSizeLevel) and the client (TaskSize::calculate_size_level).
 */
const SIZE_LEVEL_BOUNDS = [1, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576].map((m) => m * MIB);

/** Dragonfly's task size level label: "0" for unknown/empty, then by size band. */
export function taskSizeLevel(contentLength: number): string {
  if (contentLength <= 0) return "0";
  const i = SIZE_LEVEL_BOUNDS.findIndex((b) => contentLength < b);
  return String(i === -1 ? SIZE_LEVEL_BOUNDS.length + 1 : i + 1);
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** Serves `GET /metrics` from `registry` on host:port (port 0 picks a free one). */
export async function serveMetrics(registry: Registry, host: string, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (e: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`metrics: ${String(e)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
