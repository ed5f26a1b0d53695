// Starting and stopping grpc-js servers the same way in every component: keepalive settings
// that match Dragonfly's clients, message size limits, health service, bind on host:port, and
// the per-call behaviour of interceptor.ts (grpc-go style stream end, decode failures logged).
import { Server, ServerCredentials, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { createLogger, type Logger } from "../logger.js";
import { HealthImplementation, HealthService } from "./health.js";
import { serverCallInterceptor, withDecodeLogging } from "./interceptor.js";
import { tracedImplementation } from "../tracing.js";

/** Dragonfly's clients send messages up to this size (piece lists, host announcements). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export interface GrpcServerHandle {
  server: Server;
  health: HealthImplementation;
  port: number;
  close(): Promise<void>;
}

export interface GrpcService {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

/** A server with the services and health added, not yet serving any address. */
export function createGrpcServer(services: GrpcService[], log: Logger = createLogger({ component: "grpc" })): { server: Server; health: HealthImplementation } {
  const server = new Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES * 2,
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 10_000,
    interceptors: [serverCallInterceptor(log)],
  });
  const health = new HealthImplementation();
  server.addService(withDecodeLogging(HealthService, log), health.handlers());
  // Health checks stay untraced: they would be a root span every few seconds.
  for (const s of services) server.addService(withDecodeLogging(s.definition, log), tracedImplementation(s.definition, s.implementation));
  return { server, health };
}

/** Stops `server`: in-flight streams get a moment, then are cut. */
export function closeGrpcServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    // A stuck AnnouncePeer stream must not keep a process from stopping.
    const timer = setTimeout(() => server.forceShutdown(), 2000);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function startGrpcServer(
  services: GrpcService[],
  host: string,
  port: number,
  credentials = ServerCredentials.createInsecure(),
  log: Logger = createLogger({ component: "grpc" }),
): Promise<GrpcServerHandle> {
  const { server, health } = createGrpcServer(services, log);
  const bound = await new Promise<number>((resolve, reject) => {
    // A negative port means `host` is a complete address, e.g. "unix:///run/dfdaemon.sock".
    const address = port < 0 ? host : `${host.includes(":") ? `[${host}]` : host}:${port}`;
    server.bindAsync(address, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  return { server, health, port: bound, close: () => closeGrpcServer(server) };
}
