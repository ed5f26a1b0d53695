// server.requestRateLimit: a token bucket over unary calls and new streams (Dragonfly limits
// both at 4000/s by default). A call over the limit gets RESOURCE_EXHAUSTED at once instead of
// queueing behind work the server cannot keep up with.
import { status, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number = Math.max(1, ratePerSecond),
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = this.burst;
    this.last = this.now();
  }

  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSecond);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

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
