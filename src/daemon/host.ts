// This daemon as a `common.v2.Host`: what the scheduler needs to place us as a parent (ports,
// host type, idc/location, upload bandwidth) and what the Go scheduler validates (ip, hostname,
// ports ≥ 1024).
import { cpus, freemem, platform, release, totalmem, type as osType } from "node:os";
import { hostId } from "../common/ids.js";
import { VERSION } from "../common/version.js";
import type { Host } from "../gen/common/v2/common.js";

/** Dragonfly's host types: 0 normal, 1 super seed, 2 strong seed, 3 weak seed. */
export const HOST_TYPE = { normal: 0, super: 1, strong: 2, weak: 3 } as const;

export interface HostIdentity {
  ip: string;
  hostname: string;
  seedPeer: boolean;
  seedType: "super" | "strong" | "weak";
  idc: string;
  location: string;
  uploadPort: number;
  piecePort: number;
  proxyPort: number;
  schedulerClusterId: number;
  disableShared: boolean;
  /** Upload bandwidth we advertise (bytes/s), min of NIC speed and upload.bandwidthLimit. */
  maxTxBandwidth: number;
}

export function buildHost(id: HostIdentity, txBandwidth: number): Host {
  const total = totalmem();
  const free = freemem();
  return {
    id: hostId(id.ip, id.hostname, id.seedPeer),
    type: id.seedPeer ? HOST_TYPE[id.seedType] : HOST_TYPE.normal,
    hostname: id.hostname,
    ip: id.ip,
    port: id.uploadPort,
    downloadPort: id.uploadPort,
    os: platform(),
    platform: platform(),
    platformFamily: osType(),
    platformVersion: release(),
    kernelVersion: release(),
    cpu: { logicalCount: cpus().length, physicalCount: cpus().length, percent: 0, processPercent: 0 },
    memory: { total, available: free, used: total - free, usedPercent: ((total - free) / total) * 100, processUsedPercent: 0, free },
    network: {
      tcpConnectionCount: 0,
      uploadTcpConnectionCount: 0,
      idc: id.idc,
      location: id.location,
      maxRxBandwidth: id.maxTxBandwidth,
      rxBandwidth: 0,
      maxTxBandwidth: id.maxTxBandwidth,
      txBandwidth: Math.round(txBandwidth),
    },
    build: { gitVersion: VERSION, platform: `${platform()}-${process.arch}` },
    schedulerClusterId: id.schedulerClusterId,
    disableShared: id.disableShared,
    proxyPort: id.proxyPort,
    name: id.hostname,
  };
}

/** How long a built Host is reused. */
export const HOST_REUSE_MS = 1000;

/**
 * `build`, reused for HOST_REUSE_MS while `key` (the ports, known only once the servers
 * listen) stays the same. Each SyncHost stream asks for the host every second and a seed peer
 * has one stream per child; a build costs about 150 µs, most of it os.cpus().
 */
export function reusedHost(key: () => string, build: () => Host, now: () => number = Date.now): () => Host {
  let last: { at: number; key: string; host: Host } | undefined;
  return () => {
    const t = now();
    const k = key();
    if (last && last.key === k && t - last.at < HOST_REUSE_MS) return last.host;
    last = { at: t, key: k, host: build() };
    return last.host;
  };
}
