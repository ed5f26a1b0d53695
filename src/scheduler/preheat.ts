// Preheat and stat of files and images. PreheatFile has seed peers (or every peer) download a
// file ahead of demand, by the request's scope: single_seed_peer (the ring's choice for the
// task id), all_seed_peers or all_peers, narrowed by ips, count or percentage. PreheatImage
// resolves the image's manifest (the shared OCI resolver the manager's job uses) and preheats
// each blob as a file the same way, at most concurrent_task_count blobs at once. Both answer
// once the downloads are dispatched, as Dragonfly's scheduler does; StatFile / StatImage then
// report which peers hold (or are fetching) each file or blob, from this scheduler's state.
import { status, type ServiceError } from "@grpc/grpc-js";
import { isIP } from "node:net";
import type { Logger } from "pino";
import { taskIdFromUrl } from "../common/ids.js";
import { ImageResolveError, isManifestUrl, type ImageResolver, type ResolvedImage } from "../common/oci/resolver.js";
import { MAX_PIECE_LENGTH, MIN_PIECE_LENGTH } from "../common/piece.js";
import { SsrfError } from "../common/ssrf.js";
import { TaskType, type Download, type Priority } from "../gen/common/v2/common.js";
import type { Duration } from "../gen/google/protobuf/duration.js";
import type { PeerImage, PreheatFileRequest, PreheatImageRequest, StatImageRequest, StatImageResponse } from "../gen/scheduler/v2/scheduler.js";
import type { Host } from "./resource/host.js";
import type { Resource } from "./resource/resource.js";
import type { SeedPeers } from "./seed-peers.js";
import { checkString, checkUrl, isDefinedPriority, LIMITS, RequestError } from "./validate.js";
import { errorMessage } from "../common/errors.js";

export const PREHEAT_SCOPES = ["single_seed_peer", "all_seed_peers", "all_peers"] as const;
export type PreheatScope = (typeof PREHEAT_SCOPES)[number];
/** Dragonfly's DefaultPreheatConcurrentTaskCount: blobs of one image preheated at once. */
export const DEFAULT_CONCURRENT_TASK_COUNT = 8;
const MAX_CONCURRENT_TASK_COUNT = 100;

const invalid = (m: string) => new RequestError(status.INVALID_ARGUMENT, m);
/** Failed preheats remembered for StatFile (oldest forgotten first). */
const MAX_FAILED_PREHEATS = 10_000;

const grpcCode = (e: unknown) => (typeof e === "object" && e !== null && typeof (e as ServiceError).code === "number" ? (e as ServiceError).code : undefined);
const errorText = (e: unknown) => (grpcCode(e) !== undefined ? ((e as ServiceError).details ?? (e as Error).message) : errorMessage(e));

/** Narrows hosts by ips, else count, else percentage (at least one), else all. */
export function selectHosts(hosts: Host[], ips: string[], count: number | undefined, percentage: number | undefined): Host[] {
  const sorted = [...hosts].sort((a, b) => a.id.localeCompare(b.id));
  if (ips.length > 0) return sorted.filter((h) => ips.includes(h.ip));
  if (count !== undefined) return sorted.slice(0, count);
  if (percentage !== undefined) return sorted.slice(0, Math.max(1, Math.floor((sorted.length * percentage) / 100)));
  return sorted;
}

/** The fields PreheatFileRequest and PreheatImageRequest share that decide what is fetched where. */
interface PreheatCommon {
  pieceLength?: number | undefined;
  tag?: string | undefined;
  application?: string | undefined;
  filteredQueryParams: string[];
  scope: string;
  ips: string[];
  percentage?: number | undefined;
  count?: number | undefined;
  priority: Priority;
  timeout?: Duration | undefined;
  certificateChain: Buffer[];
}

/** The origin options a file preheat passes on to the download (credentials, hub revision). */
type SourceOptions = Pick<Download, "objectStorage" | "hdfs" | "huggingFace" | "modelScope">;

/**
 * The task id of a preheated file (PreheatFile and StatFile): as a peer's download of the same
 * URL computes it, the hub revision included (daemon/task/task-id.ts).
 */
export function fileTaskId(f: { url: string; tag?: string | undefined; application?: string | undefined; pieceLength?: number | undefined; filteredQueryParams: string[] } & Pick<SourceOptions, "huggingFace" | "modelScope">): string {
  return taskIdFromUrl({ url: f.url, tag: f.tag, application: f.application, revision: f.huggingFace?.revision ?? f.modelScope?.revision, pieceLength: f.pieceLength, filteredQueryParams: f.filteredQueryParams });
}

/** One file to preheat and the hosts that will fetch it. */
interface Plan {
  taskId: string;
  download: Download;
  targets: Host[];
  scope: PreheatScope;
}

/** The latest preheat of a task: targets still downloading, and why the others failed. */
interface Outcome {
  running: number;
  succeeded: number;
  failures: string[];
}

/** A peer holding (or fetching) a task: Dragonfly counts running and back-to-source peers too. */
export interface CachedCopy {
  ip: string;
  hostname: string;
  hostId: string;
  isFinished: boolean;
}

/** Runs `fn` over `items` with at most `limit` in flight; every item runs even if some fail. */
async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

export class Preheat {
  /** Per task id, its latest preheat's outcome; StatFile reports a failed one (PREHEAT_FAILED). */
  private readonly outcomes = new Map<string, Outcome>();

  constructor(
    private readonly resource: Resource,
    private readonly seedPeers: SeedPeers | undefined,
    private readonly images: ImageResolver,
    private readonly log: Logger,
  ) {}

  /** Validates the shared fields; returns the effective scope. */
  private checkCommon(req: PreheatCommon): PreheatScope {
    checkString("tag", req.tag, LIMITS.string);
    checkString("application", req.application, LIMITS.string);
    if (req.filteredQueryParams.length > LIMITS.filteredQueryParams) throw invalid(`filtered_query_params has ${req.filteredQueryParams.length} entries, over the limit of ${LIMITS.filteredQueryParams}`);
    if (req.pieceLength !== undefined && (req.pieceLength < MIN_PIECE_LENGTH || req.pieceLength > MAX_PIECE_LENGTH)) throw invalid(`piece_length ${req.pieceLength} is outside [${MIN_PIECE_LENGTH}, ${MAX_PIECE_LENGTH}]`);
    const scope = (req.scope === "" ? "single_seed_peer" : req.scope) as PreheatScope;
    if (!PREHEAT_SCOPES.includes(scope)) throw invalid(`scope "${req.scope.slice(0, 50)}" is not one of ${PREHEAT_SCOPES.join(", ")}`);
    if (req.ips.length > 100) throw invalid(`ips has ${req.ips.length} entries, over the limit of 100`);
    for (const ip of req.ips) if (isIP(ip) === 0) throw invalid(`ips: "${ip.slice(0, 50)}" is not an IP address`);
    if (req.percentage !== undefined && (req.percentage < 1 || req.percentage > 100)) throw invalid(`percentage ${req.percentage} is outside [1, 100]`);
    if (req.count !== undefined && (req.count < 1 || req.count > 200)) throw invalid(`count ${req.count} is outside [1, 200]`);
    if (!isDefinedPriority(req.priority)) throw invalid(`priority ${req.priority} is not a defined Priority`);
    if (!this.seedPeers) throw new RequestError(status.FAILED_PRECONDITION, "seed peers are disabled (seedPeer.enable: false); nothing can preheat");
    return scope;
  }

  /** The task a URL becomes and the hosts that should fetch it; FAILED_PRECONDITION when none can. */
  private plan(url: string, header: Record<string, string>, req: PreheatCommon & SourceOptions, scope: PreheatScope, seedPeers: SeedPeers): Plan {
    // `url` last: an image preheat's request carries the manifest's URL, and each blob is a task of its own.
    const taskId = fileTaskId({ ...req, url });
    const download: Download = {
      url,
      type: TaskType.STANDARD,
      tag: req.tag,
      application: req.application,
      priority: req.priority,
      filteredQueryParams: req.filteredQueryParams,
      requestHeader: header,
      pieceLength: req.pieceLength,
      timeout: req.timeout,
      disableBackToSource: false,
      needBackToSource: true,
      certificateChain: req.certificateChain,
      prefetch: false,
      objectStorage: req.objectStorage,
      hdfs: req.hdfs,
      huggingFace: req.huggingFace,
      modelScope: req.modelScope,
      isPrefetch: false,
      needPieceContent: false,
      forceHardLink: false,
      overwrite: false,
      enableTaskIdBasedBlobDigest: false,
      metadataOnly: false,
    };
    let targets: Host[];
    if (scope === "single_seed_peer") {
      const seed = seedPeers.select(taskId);
      targets = seed ? [seed] : [];
    } else {
      const pool = [...this.resource.hosts.values()].filter((h) => scope === "all_peers" || h.isSeed);
      targets = selectHosts(pool, req.ips, req.count, req.percentage);
    }
    if (targets.length === 0) throw new RequestError(status.FAILED_PRECONDITION, `no ${scope === "all_peers" ? "peer" : "seed peer"} available to preheat ${url.slice(0, 200)}`);
    return { taskId, download, targets, scope };
  }

  /**
   * Starts the downloads of a plan; settles when every target finished or failed. The outcome
   * is recorded for StatFile: a preheat that failed everywhere is reported as failed instead
   * of leaving the manager to wait out the job's timeout for a file that will not appear.
   */
  private dispatch(plan: Plan, seedPeers: SeedPeers): Promise<void> {
    const { taskId, targets } = plan;
    const outcome: Outcome = { running: targets.length, succeeded: 0, failures: [] };
    this.outcomes.delete(taskId);
    this.outcomes.set(taskId, outcome);
    if (this.outcomes.size > MAX_FAILED_PREHEATS) this.outcomes.delete(this.outcomes.keys().next().value as string);
    return Promise.all(
      targets.map(async (host) => {
        const failure = await this.fetchOn(plan, host, seedPeers);
        outcome.running--;
        if (failure === undefined) outcome.succeeded++;
        else outcome.failures.push(failure);
        // Only a preheat that failed everywhere stays to be reported.
        if (outcome.running === 0 && outcome.succeeded > 0 && this.outcomes.get(taskId) === outcome) this.outcomes.delete(taskId);
      }),
    ).then(() => undefined);
  }

  /**
   * Has `host` download the plan's task; returns why it failed, or undefined. A seed peer that
   * went away mid-download (killed, restarted: its stream ends UNAVAILABLE) hands a
   * single_seed_peer preheat to the next seed on the ring, as if it had left; a failure of the
   * download itself (an origin's 404) would only repeat elsewhere and ends the preheat.
   */
  private async fetchOn(plan: Plan, host: Host, seedPeers: SeedPeers): Promise<string | undefined> {
    const { taskId, download } = plan;
    const tried = new Set<string>();
    const failures: string[] = [];
    let target: Host | undefined = host;
    while (target) {
      tried.add(target.id);
      // Seeds fetch from the origin; ordinary peers join the swarm like any download.
      const started = seedPeers.trigger(taskId, download, target, target.isSeed);
      if (!started) break;
      try {
        await started.done;
        this.log.info({ taskId, hostId: target.id }, "preheat finished");
        return undefined;
      } catch (err) {
        const why = `${target.isSeed ? "seed peer" : "peer"} ${target.hostname} (${target.ip}) failed: ${errorText(err)}`;
        failures.push(why);
        this.log.warn({ taskId, hostId: target.id, err: errorText(err) }, "preheat failed");
        if (plan.scope !== "single_seed_peer" || grpcCode(err) !== status.UNAVAILABLE) break;
        target = seedPeers.select(taskId, tried);
        if (target) this.log.info({ taskId, hostId: target.id, after: [...tried] }, "preheat moves to another seed peer");
      }
    }
    return failures.join("; ");
  }

  /**
   * Why the latest preheat of `taskId` failed, when it failed on every target; undefined while
   * it runs, after a success, or for a task this scheduler never preheated.
   */
  failure(taskId: string): string | undefined {
    const o = this.outcomes.get(taskId);
    if (!o || o.running > 0 || o.succeeded > 0 || o.failures.length === 0) return undefined;
    return `preheat failed: ${o.failures.join("; ")}`;
  }

  /** Validates, picks targets and dispatches; returns the chosen hosts. */
  preheatFile(req: PreheatFileRequest): Host[] {
    checkUrl("url", req.url);
    checkString("output_path", req.outputPath, LIMITS.string);
    const scope = this.checkCommon(req);
    const seedPeers = this.seedPeers as SeedPeers;
    const plan = this.plan(req.url, req.header, req, scope, seedPeers);
    void this.dispatch(plan, seedPeers);
    return plan.targets;
  }

  /** Resolves a manifest URL into its blob URLs with the registry's credentials. */
  private async resolve(req: { url: string; header: Record<string, string>; username?: string | undefined; password?: string | undefined; platform?: string | undefined }): Promise<ResolvedImage> {
    checkUrl("url", req.url);
    if (!isManifestUrl(req.url)) throw invalid(`url "${req.url.slice(0, 200)}" is not a manifest URL: {scheme}://{registry}/v2/{repository}/manifests/{tag or digest}`);
    const u = new URL(req.url);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw invalid(`url scheme "${u.protocol}" is not http or https`);
    checkString("username", req.username, LIMITS.string);
    checkString("password", req.password, LIMITS.string);
    if (req.platform && !/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/.test(req.platform)) throw invalid(`platform "${req.platform.slice(0, 50)}" is not os/arch[/variant]`);
    try {
      return await this.images.resolve(req.url, { headers: req.header, username: req.username ?? "", password: req.password ?? "" }, req.platform || undefined);
    } catch (e) {
      // The manifest cannot be had: the request names something unusable (Dragonfly answers
      // INVALID_ARGUMENT for every resolution failure); a registry that is down is UNAVAILABLE.
      if (e instanceof ImageResolveError || e instanceof SsrfError) throw invalid(`failed to resolve manifests: ${e.message}`);
      const cause = e instanceof Error && e.cause instanceof SsrfError ? e.cause : undefined;
      if (cause) throw invalid(`failed to resolve manifests: ${cause.message}`);
      throw new RequestError(status.UNAVAILABLE, `failed to resolve manifests: ${errorMessage(e)}`);
    }
  }

  /**
   * Resolves the image and plans every blob (so a missing seed peer fails the RPC), then
   * preheats the blobs in the background, `concurrentTaskCount` at a time. Returns the blob
   * URLs and the hosts chosen for each.
   */
  async preheatImage(req: PreheatImageRequest): Promise<Array<{ url: string; taskId: string; targets: Host[] }>> {
    const scope = this.checkCommon(req);
    const seedPeers = this.seedPeers as SeedPeers;
    const concurrency = req.concurrentTaskCount ?? DEFAULT_CONCURRENT_TASK_COUNT;
    if (concurrency < 1 || concurrency > MAX_CONCURRENT_TASK_COUNT) throw invalid(`concurrent_task_count ${concurrency} is outside [1, ${MAX_CONCURRENT_TASK_COUNT}]`);
    const image = await this.resolve(req);
    const plans = image.blobUrls.map((url) => this.plan(url, image.headers, req, scope, seedPeers));
    this.log.info({ url: req.url, blobs: plans.length, scope }, "preheat image dispatched");
    void eachLimit(plans, concurrency, (plan) => this.dispatch(plan, seedPeers)).then(() => this.log.info({ url: req.url }, "preheat image finished"));
    return plans.map((p) => ({ url: p.download.url, taskId: p.taskId, targets: p.targets }));
  }

  /** Peers of a task that hold it or are fetching it (a task this scheduler never saw: none). */
  cachedCopies(taskId: string): CachedCopy[] {
    const task = this.resource.tasks.get(taskId);
    if (!task) return [];
    return task.dag
      .values()
      .filter((p) => p.fsm.is("Succeeded", "Running", "BackToSource"))
      .map((p) => ({ ip: p.host.ip, hostname: p.host.hostname, hostId: p.host.id, isFinished: p.fsm.is("Succeeded") }));
  }

  /** The image's blobs and, per host, which of them it holds. */
  async statImage(req: StatImageRequest): Promise<StatImageResponse> {
    checkString("tag", req.tag, LIMITS.string);
    checkString("application", req.application, LIMITS.string);
    if (req.filteredQueryParams.length > LIMITS.filteredQueryParams) throw invalid(`filtered_query_params has ${req.filteredQueryParams.length} entries, over the limit of ${LIMITS.filteredQueryParams}`);
    if (req.pieceLength !== undefined && (req.pieceLength < MIN_PIECE_LENGTH || req.pieceLength > MAX_PIECE_LENGTH)) throw invalid(`piece_length ${req.pieceLength} is outside [${MIN_PIECE_LENGTH}, ${MAX_PIECE_LENGTH}]`);
    const image = await this.resolve(req);
    const peers = new Map<string, PeerImage>();
    for (const url of image.blobUrls) {
      const taskId = taskIdFromUrl({ url, tag: req.tag, application: req.application, pieceLength: req.pieceLength, filteredQueryParams: req.filteredQueryParams });
      for (const copy of this.cachedCopies(taskId)) {
        let peer = peers.get(copy.hostId);
        if (!peer) {
          peer = { ip: copy.ip, hostname: copy.hostname, cachedLayers: [] };
          peers.set(copy.hostId, peer);
        }
        // A host may run several peers of one task (a retry); it holds the blob if any finished.
        const layer = peer.cachedLayers.find((l) => l.url === url);
        if (!layer) peer.cachedLayers.push({ url, isFinished: copy.isFinished });
        else layer.isFinished = layer.isFinished === true || copy.isFinished;
      }
    }
    return { image: { layers: image.blobUrls.map((url) => ({ url })) }, peers: [...peers.values()] };
  }
}
