// What every route module receives from the app factory.
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from "fastify";
import type { Database } from "../db/database.js";
import type { Authenticator } from "../auth/principal.js";
import type { JwtService } from "../auth/tokens.js";
import type { JobRateLimiter } from "../jobs/rate-limiter.js";
import type { JobService } from "../jobs/service.js";
import type { Logger } from "../../common/logger.js";

/**
 * The manager's fastify instance with TypeBox as its type provider: a route's params, query,
 * body and reply are typed from the TypeBox schemas it declares (validation stays fastify's
 * ajv, so the 400 messages are ajv's).
 */
export type ManagerApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

export interface RouteContext {
  db: Database;
  auth: Authenticator;
  jwt: JwtService;
  logger: Logger;
  jobs: JobService;
  limiter: JobRateLimiter;
  signUp: boolean;
}

export const JWT_SECURITY = [{ jwt: [] as string[] }];
export const PAT_SECURITY = [{ personalAccessToken: [] as string[] }];
