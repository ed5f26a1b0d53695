// Dragonfly's proxy counters (dragonfly_client_proxy_request_*, as the 1.5 client labels them:
// requests by scheme and method, the rest unlabelled; rate_limited_total counts what
// proxy.server.requestRateLimit turned away), and ours: refusals by reason, so an operator sees
// when runtimes are bypassing the mirror.
import { Counter, type Registry } from "prom-client";
import { REFUSAL_REASONS } from "./refusals.js";

export interface ProxyMetrics {
  requestTotal: Counter<"scheme" | "method">;
  requestFailureTotal: Counter;
  requestViaDfdaemonTotal: Counter;
  requestRateLimitedTotal: Counter;
  requestRefusedTotal: Counter<"reason">;
}

export function proxyMetrics(registry: Registry): ProxyMetrics {
  const registers = [registry];
  const requestRefusedTotal = new Counter({
    name: "dragonfly_client_proxy_request_refused_total",
    help: "Counter of the proxy requests the proxy refused or could not serve itself, by reason (the runtime may have pulled from the registry directly).",
    labelNames: ["reason"] as const,
    registers,
  });
  // Every reason exported from the start, so a dashboard's rate() sees the first refusal.
  for (const reason of REFUSAL_REASONS) requestRefusedTotal.labels(reason).inc(0);
  return {
    requestTotal: new Counter({ name: "dragonfly_client_proxy_request_total", help: "Counter of the number of the proxy request.", labelNames: ["scheme", "method"], registers }),
    requestFailureTotal: new Counter({ name: "dragonfly_client_proxy_request_failure_total", help: "Counter of the number of failed of the proxy request.", registers }),
    requestViaDfdaemonTotal: new Counter({ name: "dragonfly_client_proxy_request_via_dfdaemon_total", help: "Counter of the number of the proxy request via dfdaemon.", registers }),
    requestRateLimitedTotal: new Counter({ name: "dragonfly_client_proxy_request_rate_limited_total", help: "Counter of the number of the proxy request rate limited.", registers }),
    requestRefusedTotal,
  };
}
