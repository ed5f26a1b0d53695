// One pino logger factory for every process. Secrets never reach a log line: any field that
// commonly carries credentials is redacted wherever it sits, at up to two levels of nesting.
import { pino, type Logger, type LoggerOptions } from "pino";

const SECRET_KEYS = ["authorization", "Authorization", "password", "token", "accessToken", "refreshToken", "secret", "cookie", "Cookie"];
const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `headers.${k}`, `req.headers.${k}`]);

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
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
