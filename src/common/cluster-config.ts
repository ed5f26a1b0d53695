// Reading a cluster config the manager hands out as JSON bytes (scheduler_cluster.config,
// client_config, seed_client_config) for dynconfig: keys are optional, 0 means unset (Go's
// omitted zero, as Dragonfly writes them), and a value that cannot be used is logged once (not
// at every refresh) and ignored, so the local config stays in force.
import type { Logger } from "pino";

export class ClusterConfigReader {
  /** Problems already logged, as `key=value`. */
  private readonly reported = new Set<string>();

  constructor(
    /** What the config is, for the log ("the scheduler cluster's config"). */
    private readonly what: string,
    private readonly log: Logger,
  ) {}

  /** The config as an object; undefined (logged once) when it is not a JSON object, {} when empty. */
  parse(raw: Buffer | undefined): Record<string, unknown> | undefined {
    if (!raw || raw.length === 0) return {};
    let config: unknown;
    try {
      config = JSON.parse(raw.toString("utf8"));
    } catch {
      this.reportOnce("config", raw.toString("utf8").slice(0, 200), `${this.what} is not JSON; ignored`);
      return undefined;
    }
    if (typeof config === "object" && config !== null && !Array.isArray(config)) return config as Record<string, unknown>;
    this.reportOnce("config", JSON.stringify(config), `${this.what} is not a JSON object; ignored`);
    return undefined;
  }

  /** `config[key]` when it is an integer from `min` to `max`; undefined when unset (or 0), or logged once when out of bounds. */
  integer(config: Record<string, unknown>, key: string, min: number, max: number, keeping: number): number | undefined {
    const v = config[key];
    if (v === undefined || v === null || v === 0) return undefined;
    if (typeof v === "number" && Number.isInteger(v) && v >= min && v <= max) return v;
    this.reportOnce(key, JSON.stringify(v), `${this.what}: ${key} must be an integer from ${min} to ${max}; keeping ${keeping}`);
    return undefined;
  }

  private reportOnce(key: string, value: string, message: string): void {
    const id = `${key}=${value}`;
    if (this.reported.has(id)) return;
    this.reported.add(id);
    this.log.warn({ key, value }, message);
  }
}
