// OpenTelemetry tracing (issue #25): one trace follows a download from dfget through its daemon,
// the scheduler and the seed peer to the origin. W3C trace context rides in gRPC metadata and in
// the origin request's headers (`traceparent`), so each process exports its own spans to one
// OTLP/HTTP collector and the collector joins them.
//
// Off unless `tracing.endpoint` is set (Dragonfly's dfdaemon.yaml `tracing` keys: protocol,
// endpoint, path, headers). Off, the SDK is never loaded: the API's global tracer and propagator
// stay the no-op ones, servers and clients get no interceptor, and nothing reaches the wire.
import { InterceptingCall, type Interceptor, type Metadata, type ServiceDefinition, type UntypedHandleCall, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import { type Static, Type } from "@sinclair/typebox";
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { ConfigError, validateConfig } from "./config.js";
import { errorMessage } from "./errors.js";
import { VERSION } from "./version.js";

/** The `tracing` section of every component's config, as Dragonfly's client names its keys. */
export const TracingSectionSchema = Type.Object(
  {
    /** OTLP over HTTP with JSON bodies; Dragonfly's "grpc" protocol is not offered. */
    protocol: Type.Union([Type.Literal("http"), Type.Literal("https")], { default: "http" }),
    endpoint: Type.String({ default: "", description: "host:port of an OTLP/HTTP collector; empty disables tracing" }),
    path: Type.String({ default: "/v1/traces", pattern: "^/" }),
    headers: Type.Record(Type.String(), Type.String(), { default: {} }),
  },
  { additionalProperties: false, default: {} },
);

export type TracingConfig = Static<typeof TracingSectionSchema>;
const TracingFileSchema = Type.Object({ tracing: TracingSectionSchema });

const TRACER = "damselfly";
/** A collector that does not answer delays a short-lived process's exit (dfget) by at most this. */
const EXPORT_TIMEOUT_MS = 5000;
let shutdownProvider: (() => Promise<void>) | undefined;

/** Whether this process exports spans (startTracing ran with an endpoint). */
export function tracingEnabled(): boolean {
  return shutdownProvider !== undefined;
}

/** The collector's URL, or a ConfigError naming the key when the endpoint is not host:port. */
export function collectorUrl(cfg: TracingConfig, source = "config"): string {
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:/\s[\]]+):\d{1,5}$/.test(cfg.endpoint)) throw new ConfigError(`${source}: tracing.endpoint: "${cfg.endpoint}" is not host:port (e.g. 127.0.0.1:4318)`);
  return `${cfg.protocol}://${cfg.endpoint}${cfg.path}`;
}

/** `cfg` when tracing is off or its endpoint is usable; a ConfigError naming the key otherwise (at config load, before anything starts). */
export function checkTracingSection<T extends TracingConfig>(cfg: T, source: string): T {
  if (cfg.endpoint) collectorUrl(cfg, source);
  return cfg;
}

/**
 * Starts exporting this process's spans as `serviceName` when `cfg.endpoint` is set; resolves
 * to the flush-and-stop to call before exiting. One provider per process: a second call (several
 * components in one test process) keeps the first.
 */
export async function startTracing(serviceName: string, cfg: TracingConfig | undefined): Promise<() => Promise<void>> {
  if (!cfg?.endpoint || shutdownProvider) return () => Promise.resolve();
  const url = collectorUrl(cfg);
  // Loaded only here: a process without tracing never pays for the SDK.
  const [{ NodeTracerProvider }, { BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }] = await Promise.all([
    import("@opentelemetry/sdk-trace-node"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
  ]);
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": serviceName, "service.version": VERSION }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url, headers: cfg.headers, timeoutMillis: EXPORT_TIMEOUT_MS }))],
  });
  // AsyncLocalStorage context manager and the W3C trace-context propagator, globally.
  provider.register();
  const stop = async () => {
    if (shutdownProvider !== stop) return;
    shutdownProvider = undefined;
    await provider.shutdown().catch(() => undefined);
  };
  shutdownProvider = stop;
  return stop;
}

/**
 * Starts tracing, then the component; the handle's close() stops the component and then flushes
 * its spans. A component that fails to start flushes what it traced before the failure.
 */
export async function withTracing<T extends { close(): Promise<void> }>(serviceName: string, cfg: TracingConfig | undefined, start: () => Promise<T>): Promise<T> {
  const stop = await startTracing(serviceName, cfg);
  let handle: T;
  try {
    handle = await start();
  } catch (e) {
    await stop();
    throw e;
  }
  const close = handle.close.bind(handle);
  handle.close = async () => {
    await close();
    await stop();
  };
  return handle;
}

/** The `tracing` section of a YAML config file (for dfget, which reads dfdaemon.yaml for it alone). */
export function loadTracingSection(path: string): TracingConfig {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, "utf8")) ?? {};
  } catch (e) {
    throw new ConfigError(`cannot read config ${path}: ${errorMessage(e)}`);
  }
  const section: unknown = raw !== null && typeof raw === "object" && "tracing" in raw ? raw.tracing : undefined;
  // Validated under its own key, so errors name it as the daemon would (tracing.endpoint, ...).
  return checkTracingSection(validateConfig(TracingFileSchema, { tracing: section ?? {} }, path).tracing, path);
}

/**
 * Runs `fn` in a new span (a child of the active one), ending it when `fn` settles and marking it
 * failed when `fn` throws. Without tracing the span is the API's no-op one.
 */
export function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>, kind: SpanKind = SpanKind.INTERNAL): Promise<T> {
  return trace.getTracer(TRACER).startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (e) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(e) });
      throw e;
    } finally {
      span.end();
    }
  });
}

/** `headers` with the active trace context added (`traceparent`, `tracestate`); unchanged without tracing. */
export function withTraceHeaders(headers: Record<string, string>): Record<string, string> {
  if (!tracingEnabled()) return headers;
  const out = { ...headers };
  propagation.inject(context.active(), out);
  return out;
}

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (md) => Object.keys(md.getMap()),
  get: (md, key) => md.get(key).map(String),
};
const metadataSetter: TextMapSetter<Metadata> = { set: (md, key, value) => md.set(key, value) };

/** Client options adding the active trace context to every call's metadata; none without tracing. */
export function tracingClientOptions(): { interceptors?: Interceptor[] } {
  if (!tracingEnabled()) return {};
  const inject: Interceptor = (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        propagation.inject(context.active(), metadata, metadataSetter);
        next(metadata, listener);
      },
    });
  return { interceptors: [inject] };
}

interface TracedCall {
  metadata: Metadata;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
}
type Callback = (err: unknown, ...rest: unknown[]) => void;

/**
 * `implementation` with each handler run in a server span whose parent is the caller's trace
 * context (from the metadata). The call's event listeners run in that span's context too: a
 * streaming handler's work happens in its 'data' listeners, not in the handler's own frame.
 */
export function tracedImplementation(definition: ServiceDefinition, implementation: UntypedServiceImplementation): UntypedServiceImplementation {
  if (!tracingEnabled()) return implementation;
  const tracer = trace.getTracer(TRACER);
  const out: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const path = definition[name]?.path ?? name;
    const [service = "", method = name] = path.replace(/^\//, "").split("/");
    const wrapped = (call: TracedCall, callback?: Callback): unknown => {
      const parent = propagation.extract(ROOT_CONTEXT, call.metadata, metadataGetter);
      const span = tracer.startSpan(`${service}/${method}`, { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method } }, parent);
      let ended = false;
      const end = (err?: unknown) => {
        if (ended) return;
        ended = true;
        if (err) span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
        span.end();
      };
      const ctx = trace.setSpan(parent, span);
      context.bind(ctx, call as unknown as NodeJS.EventEmitter);
      if (callback) {
        return context.with(ctx, () =>
          (handler as (c: unknown, cb: Callback) => unknown)(call, (err, ...rest) => {
            end(err);
            callback(err, ...rest);
          }),
        );
      }
      for (const ev of ["finish", "close"]) call.once(ev, () => end());
      call.once("cancelled", () => end(new Error("cancelled by the client")));
      call.once("error", (err) => end(err));
      return context.with(ctx, () => (handler as (c: unknown) => unknown)(call));
    };
    out[name] = wrapped as UntypedHandleCall;
  }
  return out;
}
