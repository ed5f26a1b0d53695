// One pino logger factory for every process. Secrets never reach a log line: any field that
// commonly carries credentials is redacted wherever it sits, at up to two levels of nesting,
// and URLs lose their query and userinfo (signed URLs, tokens, passwords): in the fields that
// carry one and inside error texts (redact-url.ts).
import { pino, type Logger, type LoggerOptions } from "pino";
import { redactUrl, redactUrlsIn } from "./redact-url.js";

// The object storage ones are Download.object_storage's (and its snake_case JSON form); the
// delegation token is Download.hdfs's (and a preheat job's args.hdfs).
const SECRET_KEYS = ["authorization", "Authorization", "password", "token", "accessToken", "refreshToken", "secret", "cookie", "Cookie", "accessKeySecret", "sessionToken", "securityToken", "access_key_secret", "session_token", "security_token", "delegationToken", "delegation_token"];
const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `headers.${k}`, `req.headers.${k}`]);

/** Top-level fields whose value is a URL, in every component's log lines. */
const URL_KEYS = ["url", "upstream", "mirror", "registry", "location", "redirect"];

const urlField = (v: unknown) => (typeof v === "string" ? redactUrl(v) : v);

/** `err` as a string (errorMessage) or an Error: URLs in its text lose query and userinfo. */
function errField(v: unknown): unknown {
  if (typeof v === "string") return redactUrlsIn(v);
  if (v instanceof Error) {
    const out = pino.stdSerializers.err(v);
    out.message = redactUrlsIn(out.message);
    out.stack = redactUrlsIn(out.stack);
    return out;
  }
  return v;
}

const SERIALIZERS: Record<string, (v: unknown) => unknown> = { ...Object.fromEntries(URL_KEYS.map((k) => [k, urlField])), err: errField, error: errField };

export type { Logger } from "pino";

export interface LoggerConfig {
  level?: string;
  /** Component name, e.g. "scheduler"; becomes the `component` field of every line. */
  component: string;
}

export function createLogger(config: LoggerConfig, destination?: pino.DestinationStream): Logger {
  const options: LoggerOptions = {
    level: config.level ?? process.env.DAMSELFLY_LOG_LEVEL ?? "info",
    base: { component: config.component, pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    serializers: SERIALIZERS,
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
