// Picks the backend for a URL by its scheme.
import { HttpBackend, type HttpBackendOptions } from "./http.js";
import type { Download } from "../../gen/common/v2/common.js";
import type { Backend } from "./types.js";
import type { BackendMetrics } from "../metrics.js";
import { instrumentBackend } from "./instrumented.js";

export * from "./types.js";

export class BackendRegistry {
  private readonly bySchema = new Map<string, Backend>();

  /** With `metrics`, every backend it hands out counts its origin requests (instrumented.ts). */
  constructor(
    backends: Backend[],
    private readonly metrics?: BackendMetrics,
  ) {
    for (const b of backends) for (const s of b.schemes) this.bySchema.set(s, b);
  }

  /** http(s), plus `extra` (file:// only for a local dfget: see backend/file.ts). */
  static withDefaults(http: HttpBackendOptions, extra: Backend[] = [], metrics?: BackendMetrics): BackendRegistry {
    return new BackendRegistry([new HttpBackend(http), ...extra], metrics);
  }

  /** The backend for `url`, bound to `download`'s options (credentials) when it takes any. */
  for(url: string, download?: Download): Backend {
    let scheme: string;
    try {
      scheme = new URL(url).protocol.replace(/:$/, "");
    } catch {
      throw new TypeError(`invalid URL: ${url}`);
    }
    const b = this.bySchema.get(scheme);
    if (!b) throw new TypeError(`unsupported URL scheme "${scheme}" (supported: ${[...this.bySchema.keys()].sort().join(", ")})`);
    const bound = download && b.forDownload ? b.forDownload(download) : b;
    return this.metrics ? instrumentBackend(bound, this.metrics) : bound;
  }

  async close(): Promise<void> {
    await Promise.all([...new Set(this.bySchema.values())].map(async (b) => b.close?.()));
  }
}
