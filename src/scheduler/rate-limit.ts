// server.requestRateLimit: a token bucket over unary calls and new streams (Dragonfly limits
// both at 4000/s by default). A call over the limit gets RESOURCE_EXHAUSTED at once instead of
// queueing behind work the server cannot keep up with.
import { status, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { TokenBucket } from "../common/token-bucket.js";

type AnyHandler = (call: { emit(event: string, err: unknown): unknown }, callback?: (err: unknown) => void) => unknown;

/** Wraps every handler; 0 or less disables the limit. */
export function rateLimitService<T extends UntypedServiceImplementation>(definition: ServiceDefinition, implementation: T, ratePerSecond: number): T {
  if (!(ratePerSecond > 0)) return implementation;
  const bucket = new TokenBucket(ratePerSecond);
  const wrapped: UntypedServiceImplementation = {};
  for (const [name, def] of Object.entries(definition)) {
    const original = implementation[name] as AnyHandler | undefined;
    if (typeof original !== "function") continue;
    const error = { code: status.RESOURCE_EXHAUSTED, details: `request rate limit ${ratePerSecond}/s exceeded` };
    wrapped[name] = ((call: Parameters<AnyHandler>[0], callback?: (err: unknown) => void) => {
      if (bucket.take()) return original.call(implementation, call, callback);
      if (!def.responseStream && callback) return callback(error);
      return call.emit("error", error);
    }) as UntypedServiceImplementation[string];
  }
  return wrapped as T;
}
