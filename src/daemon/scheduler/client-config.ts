// The scheduler cluster's client config, applied live: dynconfig.ts hands over the chosen
// cluster's client_config (seed_client_config on a seed peer, the one Dragonfly's client reads
// its block_list from) at every refresh. Dragonfly's client config carries load_limit (the
// scheduler applies it) and block_list; it has no bandwidth keys. These two are ours, in bytes/s:
//   download_bandwidth_limit   overrides download.bandwidthLimit
//   prefetch_bandwidth_limit   overrides proxy.prefetchBandwidthLimit
// while the cluster sets them; absent (or 0) leaves the local dfdaemon.yaml value, and a value
// that is not a positive integer is logged once and ignored.
import { ClusterConfigReader } from "../../common/cluster-config.js";
import type { Logger } from "../../common/logger.js";
import type { BandwidthLimits, DownloadBandwidth } from "../task/bandwidth.js";

const KEYS: ReadonlyArray<readonly [string, keyof BandwidthLimits]> = [
  ["download_bandwidth_limit", "download"],
  ["prefetch_bandwidth_limit", "prefetch"],
];

export class ClientConfigApplier {
  private readonly reader: ClusterConfigReader;

  constructor(
    private readonly bandwidth: DownloadBandwidth,
    /** The local dfdaemon.yaml limits. */
    private readonly local: BandwidthLimits,
    private readonly log: Logger,
  ) {
    this.reader = new ClusterConfigReader("the scheduler cluster's client config", log);
  }

  apply(raw: Buffer | undefined): void {
    const limits = { ...this.local };
    const config = this.reader.parse(raw);
    if (config) for (const [key, field] of KEYS) limits[field] = this.reader.integer(config, key, 1, Number.MAX_SAFE_INTEGER, limits[field]) ?? limits[field];
    const now = this.bandwidth.limits;
    if (limits.download === now.download && limits.prefetch === now.prefetch) return;
    this.bandwidth.setLimits(limits);
    this.log.info({ downloadBandwidthLimit: limits.download, prefetchBandwidthLimit: limits.prefetch }, "applied the scheduler cluster's client config");
  }
}
