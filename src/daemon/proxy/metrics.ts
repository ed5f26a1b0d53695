// Dragonfly's proxy counters (dragonfly_client_proxy_request_*), unlabelled as upstream.
import { Counter, type Registry } from "prom-client";

export interface ProxyMetrics {
  requestTotal: Counter;
  requestFailureTotal: Counter;
  requestViaDfdaemonTotal: Counter;
}

export function proxyMetrics(registry: Registry): ProxyMetrics {
  const registers = [registry];
  return {
    requestTotal: new Counter({ name: "dragonfly_client_proxy_request_total", help: "Counter of the number of the proxy request.", registers }),
    requestFailureTotal: new Counter({ name: "dragonfly_client_proxy_request_failure_total", help: "Counter of the number of failed of the proxy request.", registers }),
    requestViaDfdaemonTotal: new Counter({ name: "dragonfly_client_proxy_request_via_dfdaemon_total", help: "Counter of the number of the proxy request via dfdaemon.", registers }),
  };
}
