// YAML config files validated against TypeBox schemas. Keys follow Dragonfly's camelCase;
// unknown keys and wrong types are errors that name the key path, so a typo never silently
// falls back to a default.
import { readFileSync } from "node:fs";
import { type Static, type TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { parse as parseYaml } from "yaml";
import { errorMessage } from "./errors.js";

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses YAML text, fills schema defaults and validates; throws ConfigError naming the key. */
export function parseConfig<T extends TSchema>(schema: T, text: string, source = "config"): Static<T> {
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (e) {
    throw new ConfigError(`${source}: invalid YAML: ${errorMessage(e)}`);
  }
  return validateConfig(schema, raw, source);
}

/** Validates an already-parsed object (defaults applied first). */
export function validateConfig<T extends TSchema>(schema: T, raw: unknown, source = "config"): Static<T> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError(`${source}: top level must be a mapping`);
  const value = Value.Default(schema, Value.Clone(raw));
  const first = Value.Errors(schema, value).First();
  if (first) {
    const key = first.path.replace(/^\//, "").replaceAll("/", ".") || "(root)";
    const detail = first.message === "Unexpected property" ? "unknown key" : first.message;
    throw new ConfigError(`${source}: ${key}: ${detail}`);
  }
  return value;
}

export function loadConfigFile<T extends TSchema>(schema: T, path: string | undefined): Static<T> {
  if (!path) return validateConfig(schema, {}, "defaults");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read config ${path}: ${errorMessage(e)}`);
  }
  return parseConfig(schema, text, path);
}

/** Parses Go-style durations used by Dragonfly configs ("30s", "5m", "1h30m", "500ms") into ms. */
export function parseDuration(text: string): number {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let matched = 0;
  for (const m of text.matchAll(re)) {
    total += Number(m[1]) * (unit[m[2] ?? ""] ?? 0);
    matched += m[0].length;
  }
  if (text.length === 0 || matched !== text.length) throw new ConfigError(`invalid duration "${text}" (expected e.g. 30s, 5m, 1h)`);
  return total;
}
