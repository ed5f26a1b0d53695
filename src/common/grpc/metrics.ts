// The `grpc_server_*` family that Dragonfly's Go servers export through go-grpc-prometheus,
// rebuilt for grpc-js: started / handled (by status code) / message counters and a handling
// time histogram, labelled by grpc_type, grpc_service and grpc_method. Dashboards written for
// Dragonfly work unchanged. Wrap a service implementation before `server.addService`.
import { status, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Counter, Histogram, type Registry } from "prom-client";

/** go-grpc-prometheus spells codes the way Go's codes.Code.String() does. */
const CODE_NAMES: Record<number, string> = {
  [status.OK]: "OK",
  [status.CANCELLED]: "Canceled",
  [status.UNKNOWN]: "Unknown",
  [status.INVALID_ARGUMENT]: "InvalidArgument",
  [status.DEADLINE_EXCEEDED]: "DeadlineExceeded",
  [status.NOT_FOUND]: "NotFound",
  [status.ALREADY_EXISTS]: "AlreadyExists",
  [status.PERMISSION_DENIED]: "PermissionDenied",
  [status.RESOURCE_EXHAUSTED]: "ResourceExhausted",
  [status.FAILED_PRECONDITION]: "FailedPrecondition",
  [status.ABORTED]: "Aborted",
  [status.OUT_OF_RANGE]: "OutOfRange",
  [status.UNIMPLEMENTED]: "Unimplemented",
  [status.INTERNAL]: "Internal",
  [status.UNAVAILABLE]: "Unavailable",
  [status.DATA_LOSS]: "DataLoss",
  [status.UNAUTHENTICATED]: "Unauthenticated",
};

export function grpcCodeName(code: number): string {
  return CODE_NAMES[code] ?? "Unknown";
}

export type GrpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

const LABELS = ["grpc_type", "grpc_service", "grpc_method"] as const;

export interface GrpcServerMetrics {
  started: Counter<(typeof LABELS)[number]>;
  handled: Counter<(typeof LABELS)[number] | "grpc_code">;
  received: Counter<(typeof LABELS)[number]>;
  sent: Counter<(typeof LABELS)[number]>;
  handlingSeconds: Histogram<(typeof LABELS)[number]>;
}

const perRegistry = new WeakMap<Registry, GrpcServerMetrics>();

/** The metric family registered once per registry (several services share it). */
export function grpcServerMetrics(registry: Registry): GrpcServerMetrics {
  const existing = perRegistry.get(registry);
  if (existing) return existing;
  const m: GrpcServerMetrics = {
    started: new Counter({ name: "grpc_server_started_total", help: "Total number of RPCs started on the server.", labelNames: LABELS, registers: [registry] }),
    handled: new Counter({
      name: "grpc_server_handled_total",
      help: "Total number of RPCs completed on the server, regardless of success or failure.",
      labelNames: [...LABELS, "grpc_code"],
      registers: [registry],
    }),
    received: new Counter({ name: "grpc_server_msg_received_total", help: "Total number of RPC stream messages received on the server.", labelNames: LABELS, registers: [registry] }),
    sent: new Counter({ name: "grpc_server_msg_sent_total", help: "Total number of gRPC stream messages sent by the server.", labelNames: LABELS, registers: [registry] }),
    handlingSeconds: new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
      labelNames: LABELS,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  };
  perRegistry.set(registry, m);
  return m;
}

function grpcTypeOf(requestStream: boolean, responseStream: boolean): GrpcType {
  if (requestStream && responseStream) return "bidi_stream";
  if (requestStream) return "client_stream";
  if (responseStream) return "server_stream";
  return "unary";
}

/** "/scheduler.v2.Scheduler/AnnouncePeer" → ["scheduler.v2.Scheduler", "AnnouncePeer"]. */
function splitPath(path: string): [string, string] {
  const parts = path.split("/");
  return [parts[1] ?? "unknown", parts[2] ?? "unknown"];
}

type AnyFn = (...args: unknown[]) => unknown;

interface StreamLike {
  once(event: string, fn: (...args: unknown[]) => void): unknown;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
  write?: AnyFn;
}

function codeOf(err: unknown): number {
  const code: unknown = err && typeof err === "object" && "code" in err ? err.code : undefined;
  return typeof code === "number" ? code : status.UNKNOWN;
}

/**
 * Returns an implementation whose every handler records the grpc_server_* family around the
 * original. Methods the implementation lacks are left out (grpc-js then answers UNIMPLEMENTED,
 * which is not counted, as with go-grpc-prometheus for unknown methods).
 */
export function instrumentService<T extends UntypedServiceImplementation>(definition: ServiceDefinition, implementation: T, registry: Registry): T {
  const m = grpcServerMetrics(registry);
  const wrapped: UntypedServiceImplementation = {};
  for (const [name, def] of Object.entries(definition)) {
    const original = implementation[name] as AnyFn | undefined;
    if (typeof original !== "function") continue;
    const type = grpcTypeOf(def.requestStream, def.responseStream);
    const [service, method] = splitPath(def.path);
    const labels = { grpc_type: type, grpc_service: service, grpc_method: method };
    const begin = () => {
      m.started.inc(labels);
      const stop = m.handlingSeconds.startTimer(labels);
      let done = false;
      return (code: number) => {
        if (done) return;
        done = true;
        stop();
        m.handled.inc({ ...labels, grpc_code: grpcCodeName(code) });
      };
    };
    if (!def.responseStream) {
      // Unary and client-streaming calls finish through the callback.
      wrapped[name] = ((call: StreamLike, callback: AnyFn) => {
        const finish = begin();
        if (def.requestStream) call.on("data", () => m.received.inc(labels));
        else m.received.inc(labels);
        call.once("cancelled", () => finish(status.CANCELLED));
        return original.call(implementation, call, (err: unknown, ...rest: unknown[]) => {
          if (!err) m.sent.inc(labels);
          finish(err ? codeOf(err) : status.OK);
          return callback(err, ...rest);
        });
      }) as UntypedServiceImplementation[string];
    } else {
      // Streaming responses end with end() (OK) or an 'error' event that grpc-js turns into
      // the status; both pass through 'finish'.
      wrapped[name] = ((call: StreamLike) => {
        const finish = begin();
        let code: number = status.OK;
        if (def.requestStream) call.on("data", () => m.received.inc(labels));
        else m.received.inc(labels);
        const write = call.write;
        if (write) {
          call.write = (...args: unknown[]) => {
            m.sent.inc(labels);
            return write.apply(call, args);
          };
        }
        call.on("error", (err: unknown) => {
          code = codeOf(err);
        });
        call.once("finish", () => finish(code));
        call.once("cancelled", () => finish(status.CANCELLED));
        return original.call(implementation, call);
      }) as UntypedServiceImplementation[string];
    }
  }
  return wrapped as T;
}
