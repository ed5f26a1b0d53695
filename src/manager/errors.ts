// HTTP errors with Dragonfly's body shape `{"message": "..."}`; validation errors also name the
// offending field so a client can point at it.
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "../common/logger.js";

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export const badRequest = (field: string, message: string) => new HttpError(400, `${field}: ${message}`, field);
export const unauthorized = (message = "Unauthorized") => new HttpError(401, message);
export const forbidden = (message = "Forbidden") => new HttpError(403, message);
export const notFound = (what: string) => new HttpError(404, `${what} not found`);
export const conflict = (message: string) => new HttpError(409, message);

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** `body.args.url` style name of the field an ajv error points at. */
export function fieldOf(context: string, e: AjvError): string {
  const path = e.instancePath
    .split("/")
    .filter(Boolean)
    .map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"));
  if (e.keyword === "required" && typeof e.params.missingProperty === "string") path.push(e.params.missingProperty);
  return [context, ...path].join(".");
}

export function errorHandler(logger: Logger) {
  return (error: FastifyError | HttpError | Error, request: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof HttpError) {
      return reply.status(error.statusCode).send({ message: error.message, ...(error.field ? { field: error.field } : {}) });
    }
    const fe = error as FastifyError & { validation?: AjvError[]; validationContext?: string };
    if (fe.validation && fe.validation.length > 0) {
      const first = fe.validation[0] as AjvError;
      const field = fieldOf(fe.validationContext ?? "body", first);
      const message = first.keyword === "required" ? "is required" : (first.message ?? "is invalid");
      return reply.status(400).send({ message: `${field}: ${message}`, field });
    }
    if (typeof fe.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500) {
      return reply.status(fe.statusCode).send({ message: fe.message });
    }
    // Database constraint violations are the client's fault only for uniqueness and references.
    const code = (error as { code?: string }).code;
    if (code === "23505") return reply.status(409).send({ message: "an object with the same unique key already exists" });
    if (code === "23503") return reply.status(400).send({ message: "a referenced object does not exist" });
    logger.error({ err: error, method: request.method, url: request.routeOptions.url }, "request failed");
    return reply.status(500).send({ message: "Internal Server Error" });
  };
}
