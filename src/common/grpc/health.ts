// grpc.health.v1.Health, as every Dragonfly component serves it (clients probe it before use).
import { Metadata, status, type ChannelCredentials, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { HealthClient, HealthCheckResponse_ServingStatus as ServingStatus, type HealthCheckRequest, type HealthCheckResponse } from "../../gen/grpc/health/v1/health.js";

export { HealthService, HealthClient } from "../../gen/grpc/health/v1/health.js";

export class HealthImplementation {
  private readonly statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  private readonly watchers = new Set<{ service: string; call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse> }>();

  setStatus(service: string, serving: boolean): void {
    const s = serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    this.statuses.set(service, s);
    for (const w of this.watchers) if (w.service === service) w.call.write({ status: s });
  }

  /** Handlers for grpc-js `server.addService(HealthService, impl.handlers())`. */
  handlers(): UntypedServiceImplementation {
    return {
      check: (call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, cb: sendUnaryData<HealthCheckResponse>) => {
        const s = this.statuses.get(call.request.service);
        if (s === undefined) cb({ code: status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
        else cb(null, { status: s });
      },
      watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
        const w = { service: call.request.service, call };
        this.watchers.add(w);
        call.write({ status: this.statuses.get(w.service) ?? ServingStatus.SERVICE_UNKNOWN });
        call.on("cancelled", () => this.watchers.delete(w));
        call.on("close", () => this.watchers.delete(w));
      },
    };
  }
}

/**
 * One Check of service "" on a connection of its own, closed after: a client channel that
 * has been backing off reconnecting to a server that was down would keep reporting it down
 * for a while after it came back. Resolves whether the server answered SERVING in time.
 */
export function checkServing(addr: string, credentials: ChannelCredentials, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const client = new HealthClient(addr, credentials);
    client.check({ service: "" }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      resolve(!err && res?.status === ServingStatus.SERVING);
    });
  });
}
