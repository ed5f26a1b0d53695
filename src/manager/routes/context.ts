// What every route module receives from the app factory.
import type { Database } from "../db/database.js";
import type { Authenticator } from "../auth/principal.js";
import type { JwtService } from "../auth/tokens.js";
import type { JobRateLimiter } from "../jobs/rate-limiter.js";
import type { JobService } from "../jobs/service.js";
import type { Logger } from "../../common/logger.js";

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
