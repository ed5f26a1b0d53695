// Maps pipeline failures to gRPC statuses, keeping the origin's status code in metadata so
// dfget and the proxy can tell a 404 at the origin from a broken swarm.
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { DownloadError } from "../task/manager.js";
import { errorMessage } from "../../common/errors.js";

export function grpcError(code: status, details: string, meta?: Record<string, string>): Partial<ServiceError> {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(meta ?? {})) metadata.set(k, v);
  return { code, details, metadata, message: details, name: "Error" };
}

export function toGrpcError(e: unknown): Partial<ServiceError> {
  if (e instanceof DownloadError) {
    const meta: Record<string, string> = { "x-dragonfly-error-type": e.kind === "backend" || e.kind === "origin_changed" ? "backend" : "dfdaemon" };
    if (e.backend?.statusCode !== undefined) meta["x-dragonfly-backend-status-code"] = String(e.backend.statusCode);
    // An origin change is a failed test-and-set: ABORTED, retried at a higher level (a new download starts afresh).
    const code = { not_found: status.NOT_FOUND, invalid: status.INVALID_ARGUMENT, backend: status.INTERNAL, unavailable: status.UNAVAILABLE, internal: status.INTERNAL, no_space: status.RESOURCE_EXHAUSTED, origin_changed: status.ABORTED }[e.kind];
    return grpcError(code, e.message, meta);
  }
  if (e instanceof TypeError || e instanceof RangeError) return grpcError(status.INVALID_ARGUMENT, e.message);
  return grpcError(status.INTERNAL, errorMessage(e));
}

/**
 * Ends a server stream with an error status. grpc-js turns an `error` event into the status;
 * `destroy(err)` would drop the stream without ever sending one, leaving the client hanging.
 */
export function failStream(call: { emit(event: "error", e: Partial<ServiceError>): boolean }, e: Partial<ServiceError>): void {
  call.emit("error", e);
}
