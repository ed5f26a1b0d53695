// PreheatFile: have seed peers (or every peer) download a file ahead of demand, by the
// request's scope: single_seed_peer (the ring's choice for the task id), all_seed_peers or
// all_peers, narrowed by ips, count or percentage. Downloads run in the background; the RPC
// answers once they are dispatched.
import { status } from "@grpc/grpc-js";
import { isIP } from "node:net";
import type { Logger } from "pino";
import { taskIdFromUrl } from "../common/ids.js";
import { MAX_PIECE_LENGTH, MIN_PIECE_LENGTH } from "../common/piece.js";
import { TaskType, type Download } from "../gen/common/v2/common.js";
import type { PreheatFileRequest } from "../gen/scheduler/v2/scheduler.js";
import type { Host } from "./resource/host.js";
import type { Resource } from "./resource/resource.js";
import type { SeedPeers } from "./seed-peers.js";
import { checkString, checkUrl, isDefinedPriority, LIMITS, RequestError } from "./validate.js";

export const PREHEAT_SCOPES = ["single_seed_peer", "all_seed_peers", "all_peers"] as const;
export type PreheatScope = (typeof PREHEAT_SCOPES)[number];

const invalid = (m: string) => new RequestError(status.INVALID_ARGUMENT, m);

/** Narrows hosts by ips, else count, else percentage (at least one), else all. */
export function selectHosts(hosts: Host[], ips: string[], count: number | undefined, percentage: number | undefined): Host[] {
  const sorted = [...hosts].sort((a, b) => a.id.localeCompare(b.id));
  if (ips.length > 0) return sorted.filter((h) => ips.includes(h.ip));
  if (count !== undefined) return sorted.slice(0, count);
  if (percentage !== undefined) return sorted.slice(0, Math.max(1, Math.floor((sorted.length * percentage) / 100)));
  return sorted;
}

export class Preheat {
  constructor(
    private readonly resource: Resource,
    private readonly seedPeers: SeedPeers | undefined,
    private readonly log: Logger,
  ) {}

  /** Validates, picks targets and dispatches; returns the chosen hosts. */
  preheatFile(req: PreheatFileRequest): Host[] {
    checkUrl("url", req.url);
    checkString("tag", req.tag, LIMITS.string);
    checkString("application", req.application, LIMITS.string);
    checkString("output_path", req.outputPath, LIMITS.string);
    if (req.pieceLength !== undefined && (req.pieceLength < MIN_PIECE_LENGTH || req.pieceLength > MAX_PIECE_LENGTH)) throw invalid(`piece_length ${req.pieceLength} is outside [${MIN_PIECE_LENGTH}, ${MAX_PIECE_LENGTH}]`);
    const scope = (req.scope === "" ? "single_seed_peer" : req.scope) as PreheatScope;
    if (!PREHEAT_SCOPES.includes(scope)) throw invalid(`scope "${req.scope.slice(0, 50)}" is not one of ${PREHEAT_SCOPES.join(", ")}`);
    if (req.ips.length > 100) throw invalid(`ips has ${req.ips.length} entries, over the limit of 100`);
    for (const ip of req.ips) if (isIP(ip) === 0) throw invalid(`ips: "${ip.slice(0, 50)}" is not an IP address`);
    if (req.percentage !== undefined && (req.percentage < 1 || req.percentage > 100)) throw invalid(`percentage ${req.percentage} is outside [1, 100]`);
    if (req.count !== undefined && (req.count < 1 || req.count > 200)) throw invalid(`count ${req.count} is outside [1, 200]`);
    if (!isDefinedPriority(req.priority)) throw invalid(`priority ${req.priority} is not a defined Priority`);
    if (!this.seedPeers) throw new RequestError(status.FAILED_PRECONDITION, "seed peers are disabled (seedPeer.enable: false); nothing can preheat");

    const taskId = taskIdFromUrl({ url: req.url, tag: req.tag, application: req.application, pieceLength: req.pieceLength, filteredQueryParams: req.filteredQueryParams });
    const download: Download = {
      url: req.url,
      type: TaskType.STANDARD,
      tag: req.tag,
      application: req.application,
      priority: req.priority,
      filteredQueryParams: req.filteredQueryParams,
      requestHeader: req.header,
      pieceLength: req.pieceLength,
      timeout: req.timeout,
      disableBackToSource: false,
      needBackToSource: true,
      certificateChain: req.certificateChain,
      prefetch: false,
      objectStorage: req.objectStorage,
      hdfs: req.hdfs,
      isPrefetch: false,
      needPieceContent: false,
      forceHardLink: false,
      overwrite: false,
      enableTaskIdBasedBlobDigest: false,
      metadataOnly: false,
    };

    let targets: Host[];
    if (scope === "single_seed_peer") {
      const seed = this.seedPeers.select(taskId);
      targets = seed ? [seed] : [];
    } else {
      const pool = [...this.resource.hosts.values()].filter((h) => scope === "all_peers" || h.isSeed);
      targets = selectHosts(pool, req.ips, req.count, req.percentage);
    }
    if (targets.length === 0) throw new RequestError(status.FAILED_PRECONDITION, `no ${scope === "all_peers" ? "peer" : "seed peer"} available to preheat ${req.url.slice(0, 200)}`);

    for (const host of targets) {
      // Seeds fetch from the origin; ordinary peers join the swarm like any download.
      const started = this.seedPeers.trigger(taskId, download, host, host.isSeed);
      started?.done.then(
        () => this.log.info({ taskId, hostId: host.id }, "preheat finished"),
        (err: unknown) => this.log.warn({ taskId, hostId: host.id, err: err instanceof Error ? err.message : String(err) }, "preheat failed"),
      );
    }
    return targets;
  }
}
