// The download pipeline (DESIGN.md "How a download flows"): task id → local store → origin
// stat → tiny files straight from the origin → otherwise AnnouncePeer with the scheduler, P2P
// rounds from the parents it names, back-to-source when told to or when the scheduler is gone.
// Every piece lands through the native store and is reported to the scheduler at once, so
// children can pull it while we are still downloading. Concurrent requests for one task share
// one download. A task is one version of the origin's content (#20, backend/pin.ts): every
// request to the origin carries the pin, parents of another version are not used
// (pin-state.ts), and an origin that changes mid-way fails the task (or restarts it once).
// An origin that does not tell the length is read whole first (unknown-length.ts); an origin
// that fails for a while is ridden out (outage.ts).
import { EventEmitter } from "node:events";
import { dirname } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import type { Logger } from "../../common/logger.js";
import { peerId as newPeerId } from "../../common/ids.js";
import { pieceCount, pieceLengthFor, pieceRange, MIN_PIECE_LENGTH } from "../../common/piece.js";
import { TrafficType, type Download, type Peer, type Piece, type Task as TaskMessage } from "../../gen/common/v2/common.js";
import { BackendError, type Backend, type BackendRegistry, type OriginRoute } from "../backend/index.js";
import { describePin, hasValidator, OriginChangedError, pinFromHeaders, type OriginPin } from "../backend/pin.js";
import { discard } from "../backend/http.js";
import { PieceRound, type Holder, type ParentRace } from "../piece/round.js";
import { VouchedDigests } from "../piece/vouched.js";
import type { UploadClientPool } from "../piece/parents.js";
import { AnnouncePeerSession, type BackToSourceReports, type SchedulerResponse } from "../scheduler/session.js";
import { schedulerGone, type Scheduler, type SchedulerPool } from "../scheduler/pool.js";
import { downloadTaskLabels, type DaemonMetrics } from "../metrics.js";
import { taskSizeLevel } from "../../common/metrics.js";
import { countBackendRequest } from "../backend/instrumented.js";
import { freeBytes, makeRoom } from "../gc.js";
import { pieceInfoOf, type NewTask, type Storage } from "../storage/storage.js";
import type { ParentAddress, PieceInfo, TaskStore } from "../storage/types.js";
import type { TenantKey } from "../storage/tenant-keys.js";
import { ParentLinks, type RoundLinks } from "../storage/parent-links.js";
import { PieceBufferPool } from "./piece-buffers.js";
import { allocPieceBuffer, closeIdlePieceConnections, isNativeError, openTaskStore, type NativePieceInfo } from "../../native/index.js";
import { nativeToBackendError } from "../backend/http.js";
import { parseDigest } from "./digest.js";
import { DiskFaults, isNoSpace } from "./disk-faults.js";
import { rideOutage } from "./outage.js";
import { askParent, TaskPin } from "./pin-state.js";
import { failureCause, keepForResume } from "./retention.js";
import { sameAsHeld, streamFromOrigin, type StreamedPiece } from "./stream.js";
import { taskIdOf } from "./task-id.js";
import { stageFromOrigin, type StagedContent } from "./unknown-length.js";
import { TaskUploads } from "./uploads.js";
import type { DownloadBandwidth } from "./bandwidth.js";
import { BackToSourceWidth } from "./width.js";
import { errorMessage } from "../../common/errors.js";
import { durationToMs } from "../../common/grpc/duration.js";
import { redactUrl } from "../../common/redact-url.js";
import { inSpan } from "../../common/tracing.js";
import { SpanKind } from "@opentelemetry/api";

export interface TaskManagerOptions {
  hostId: string;
  ip: string;
  hostname: string;
  seedPeer: boolean;
  concurrentPieceCount: number;
  pieceTimeoutMs: number;
  collectedPieceTimeoutMs: number;
  scheduleTimeoutMs: number;
  maxScheduleCount: number;
  tier: "disk" | "memory";
  /** download.restartOnOriginChange: an origin that changes mid-way restarts the task once instead of failing it. */
  restartOnOriginChange?: boolean;
  /** backend.retryTimeout: how long back-to-source rides out an origin's temporary failures (default 60 s). */
  backendRetryTimeoutMs?: number;
  /** `download.protocol`: how pieces are fetched from parents (default "tcp"). */
  protocol?: "tcp" | "quic";
  /** download.bandwidthLimit and proxy.prefetchBandwidthLimit; unpaced when not given. */
  bandwidth?: DownloadBandwidth;
}

/**
 * Where a parent serves piece bytes for us: its QUIC port with `download.protocol: quic` when
 * it announced one, else its TCP port. Dragonfly's client opens vortex TCP to the parent's gRPC
 * port in that case, which fails; TCP is what every parent serves.
 */
export function parentAddress(h: Holder, protocol: "tcp" | "quic" = "tcp"): ParentAddress {
  return protocol === "quic" && h.quicPort > 0 ? { ip: h.ip, port: h.quicPort, protocol: "quic" } : { ip: h.ip, port: h.tcpPort };
}

export interface DownloadRequest {
  download: Download;
  /** Chosen by a remote party (seed trigger): the backend enforces the SSRF policy. */
  remote: boolean;
  signal?: AbortSignal | undefined;
  /** Called once the task's length and already-present pieces are known. */
  onStarted?(task: TaskStore, present: PieceInfo[]): void;
  /**
   * Called for each piece that lands after onStarted. `data` (streamed back-to-source only) is
   * the piece's bytes, valid until the returned promise settles (or at once, without one).
   */
  onPiece?(task: TaskStore, piece: PieceInfo, data?: Buffer): Promise<unknown> | undefined | void;
  /**
   * Back-to-source in one ranged GET with the bytes handed to onPiece as pieces land and the
   * whole-content digest computed on the way (for a requester that serves the bytes at once,
   * the proxy); otherwise pieces are fetched concurrently, one request each.
   */
  stream?: boolean;
  /**
   * The requester passes piece bytes on as they land (dfget to stdout): bytes it passed on
   * cannot be taken back, so a task it watches is never restarted from scratch (nor one the
   * proxy streams: `stream`).
   */
  liveBytes?: boolean;
  /** When the download's own timeout (Download.timeout) passes, in epoch ms; set by download(). */
  deadline?: number | undefined;
  /**
   * Ours: go through the scheduler even for content of one minimum piece (4 MiB) or less,
   * which Dragonfly always reads from the origin. The proxy's Maven and YUM mirrors set it:
   * their artifacts and RPMs are mostly that small, and sharing them is the point.
   */
  swarmSmall?: boolean;
  /**
   * A prefetch (the whole task, started by a ranged proxy request): paced by
   * proxy.prefetchBandwidthLimit instead of download.bandwidthLimit, as Dragonfly's client does.
   */
  prefetch?: boolean;
}

export class DownloadError extends Error {
  override name = "DownloadError";
  constructor(
    message: string,
    /**
     * gRPC-ish classification used by the services: "not_found", "invalid", "backend",
     * "unavailable", "internal"; "no_space" when the data directory cannot hold the task;
     * "origin_changed": the origin's content changed during the download (backend/pin.ts); the
     * task was dropped, a new download starts afresh.
     */
    readonly kind: "not_found" | "invalid" | "backend" | "unavailable" | "internal" | "no_space" | "origin_changed",
    readonly backend?: BackendError,
  ) {
    super(message);
  }
}

/** A backend failure as the pipeline reports it: an origin change keeps its own kind. */
function backendFailure(e: BackendError): DownloadError {
  return new DownloadError(e.message, e instanceof OriginChangedError ? "origin_changed" : "backend", e);
}

/** One scheduler read; `at` is when it started waiting (a read may outlive a round). */
type Read = ({ res: SchedulerResponse | undefined } | { err: unknown }) & { at: number };

/** The native back-to-source path for one task: pieces go origin → native store, never through JS. */
interface NativeOrigin {
  route: OriginRoute;
  fetch(number: number, signal: AbortSignal | undefined): Promise<NativePieceInfo>;
  /** Gives up its handle on the task's store, so a task deleted later closes its files at once. */
  close(): void;
}

/**
 * Room asked for beyond a task's content when the disk is full: its piece records, its JSON
 * record and the directory (a few KiB in practice; a filesystem allocates in blocks).
 */
const METADATA_SLACK = 1024 * 1024;


const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

/** Least time between two reads of a task's vouched piece digests (StatTask) by one download. */
const VOUCHED_REFRESH_MS = 250;

const durationOf = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) });

export function toProtoPiece(p: PieceInfo, traffic: TrafficType): Piece {
  return {
    number: p.number,
    parentId: p.parentId || undefined,
    offset: p.offset,
    length: p.length,
    // A piece fetched from the origin is reported with its collision-resistant digest: the
    // scheduler hands it to receivers as the digest to check that piece against, whoever sends
    // it (piece/vouched.ts). Pieces from parents keep Dragonfly's crc32, as its client reports.
    digest: traffic === TrafficType.BACK_TO_SOURCE ? (p.extraDigest ?? p.digest) : p.digest,
    trafficType: traffic,
    cost: durationOf(Math.max(0, p.finishedAt - p.createdAt)),
    createdAt: new Date(p.createdAt),
  };
}

/** RegisterPeerRequest.download for a task whose layout is known here. */
function registration(d: Download, task: TaskStore, needBackToSource: boolean): Download {
  return { ...d, outputPath: undefined, actualContentLength: task.meta.contentLength, actualPieceLength: task.meta.pieceLength, actualPieceCount: task.meta.pieceCount, needBackToSource };
}

/**
 * Reports the pieces a peer registered anew holds already. Pieces from parents are reported as
 * read from local storage (LOCAL_PEER), vouching for nothing; with `vouch`, those it fetched
 * from the origin itself go as back-to-source pieces with their origin digest, as when they
 * landed (toProtoPiece).
 */
function reportHeld(session: AnnouncePeerSession, task: TaskStore, vouch: boolean): void {
  for (const p of task.finished()) {
    if (vouch && !p.parentId) session.pieceBackToSourceFinished(toProtoPiece(p, TrafficType.BACK_TO_SOURCE));
    else session.pieceFinished({ ...toProtoPiece(p, TrafficType.LOCAL_PEER), parentId: undefined });
  }
}

export class TaskManager {
  /** Downloads in progress by task id; a second request for the same task joins the first. */
  private readonly running = new Map<string, Promise<TaskStore>>();
  /** Tasks whose origin ignores Range: back-to-source reads them in one sequential stream. */
  private readonly noRange = new Set<string>();
  /** Final URL (after redirects) of tasks whose origin was stat'ed in this download. */
  private readonly sourceUrls = new Map<string, string>();
  /** Whole-content digests computed while a task streamed from the origin, for verify(). */
  private readonly streamedDigests = new Map<string, string>();
  /** The content version each running download assembles (pin-state.ts). */
  private readonly pins = new Map<string, TaskPin>();
  /** Requesters per task that pass bytes on as they land (see DownloadRequest.liveBytes). */
  private readonly live = new Map<string, number>();
  /** Per-task piece events for joiners: `piece` (TaskStore, PieceInfo, data?, hold?), `started`. */
  readonly events = new EventEmitter().setMaxListeners(0);
  /** Piece buffers of back-to-source through JS, used again (a few concurrent downloads' worth kept idle). */
  private readonly pieceBuffers = new PieceBufferPool(64 * 1024 * 1024);
  /** Tasks children are downloading from us (fed by the upload service and the piece server). */
  readonly uploads = new TaskUploads();
  /** Which parents our running rounds use: idle connections to the others are closed. */
  readonly parentLinks = new ParentLinks(closeIdlePieceConnections);

  constructor(
    private readonly opts: TaskManagerOptions,
    private readonly storage: Storage,
    private readonly backends: { local: BackendRegistry; remote: BackendRegistry },
    private readonly schedulers: SchedulerPool,
    private readonly uploadClients: UploadClientPool,
    private readonly log: Logger,
    private readonly metrics?: DaemonMetrics,
  ) {}

  /** Whether a download of this task is in progress. */
  isRunning(taskId: string): boolean {
    return this.running.has(taskId);
  }

  /** Whether the task is downloading or children are downloading it from us: GC leaves it alone. */
  isInUse(taskId: string): boolean {
    return this.running.has(taskId) || this.uploads.active(taskId);
  }

  async download(req: DownloadRequest): Promise<TaskStore> {
    const d = req.download;
    if (!d.url) throw new DownloadError("download.url is required", "invalid");
    try {
      new URL(d.url);
    } catch {
      throw new DownloadError(`invalid URL: ${d.url}`, "invalid");
    }
    if (d.digest !== undefined && d.digest !== "") parseDigest(d.digest);
    if (d.pieceLength !== undefined && (d.pieceLength < MIN_PIECE_LENGTH || d.pieceLength > 64 * 1024 * 1024)) {
      throw new DownloadError(`piece length ${d.pieceLength} is outside 4 MiB–64 MiB`, "invalid");
    }
    const taskId = taskIdOf(d);

    // Dragonfly's download task metrics: every request counts, a cache hit and a joiner too.
    const labels = downloadTaskLabels(d);
    this.metrics?.downloadTaskTotal.inc(labels);
    this.metrics?.concurrentDownloadTask.inc(labels);
    const start = performance.now();
    try {
      const task = await this.downloadTask(taskId, req);
      const size = d.range?.length ?? task.meta.contentLength;
      this.metrics?.downloadTaskDuration.observe({ task_type: labels.type, task_size_level: taskSizeLevel(size) }, performance.now() - start);
      return task;
    } catch (e) {
      this.metrics?.downloadTaskFailureTotal.inc(labels);
      throw e;
    } finally {
      this.metrics?.concurrentDownloadTask.dec(labels);
    }
  }

  private async downloadTask(taskId: string, req: DownloadRequest): Promise<TaskStore> {
    const d = req.download;
    const existing = this.storage.get(taskId);
    if (existing && existing.meta.state === "succeeded" && existing.finished().length === existing.meta.pieceCount) {
      // A cache hit answers for the requester's digest too: a wrong one must never be reported
      // as success, and a cached task that fails it is dropped and fetched again (the fresh
      // download then verifies it, so a wrong digest still fails, after a fresh look).
      if (!d.digest || (await this.digestHolds(existing, d.digest))) {
        // The requester reads it all from local storage (Dragonfly's LOCAL_PEER traffic).
        this.metrics?.downloadTraffic.inc({ type: "LOCAL_PEER" }, existing.meta.contentLength);
        req.onStarted?.(existing, existing.finished());
        // A scheduler triggering us (seed peer) for a task held whole here has no peer that
        // can serve it: a new scheduler its last one's tasks moved to, or one whose peers of
        // the task left. Register there as a finished peer, or its peers read the origin.
        if (req.remote && d.needBackToSource) await this.announceFinished(existing, req);
        return existing;
      }
      this.log.warn({ taskId, digest: d.digest }, "cached task does not match the requested digest; deleting it and downloading again");
      if (!this.running.has(taskId)) await this.storage.delete(taskId);
    }

    let run = this.running.get(taskId);
    const onPiece = (t: TaskStore, p: PieceInfo, data?: Buffer, hold?: (p: Promise<unknown>) => void) => {
      const used = req.onPiece?.(t, p, data);
      if (used && hold) hold(used);
    };
    const onStarted = (t: TaskStore, present: PieceInfo[]) => req.onStarted?.(t, present);
    // Started fires again when the task restarts from scratch (another version of the content).
    const liveBytes = req.stream === true || req.liveBytes === true;
    if (liveBytes) this.live.set(taskId, (this.live.get(taskId) ?? 0) + 1);
    if (run) {
      // Join: report what exists now, then each piece as it lands.
      const live = this.storage.get(taskId);
      if (live) onStarted(live, live.finished());
    } else {
      const timeoutMs = durationToMs(d.timeout);
      run = this.run(taskId, { ...req, deadline: timeoutMs > 0 ? Date.now() + timeoutMs : undefined }).finally(() => this.running.delete(taskId));
      this.running.set(taskId, run);
    }
    this.events.on(`started:${taskId}`, onStarted);
    this.events.on(`piece:${taskId}`, onPiece);
    try {
      const task = await run;
      // A requester that joined a running download verifies its own digest, if it differs.
      if (d.digest && !(await this.digestHolds(task, d.digest))) throw new DownloadError(`digest mismatch: expected ${d.digest}, the content has another`, "invalid");
      return task;
    } finally {
      this.events.off(`piece:${taskId}`, onPiece);
      this.events.off(`started:${taskId}`, onStarted);
      if (liveBytes) {
        const n = (this.live.get(taskId) ?? 1) - 1;
        if (n > 0) this.live.set(taskId, n);
        else this.live.delete(taskId);
      }
    }
  }

  /** Resolves once the download's bandwidth allows `bytes` more (see bandwidth.ts). */
  private pace(req: DownloadRequest, bytes: number): Promise<void> {
    return this.opts.bandwidth?.pace(bytes, req.prefetch === true, req.signal) ?? Promise.resolve();
  }

  /** Every piece that lands passes here or through emitStreamedPiece: counted as download traffic. */
  private emitPiece(task: TaskStore, p: PieceInfo): void {
    this.countLanded(p);
    this.events.emit(`piece:${task.id}`, task, p);
  }

  /** A piece with its bytes: listeners that keep using them return promises through `hold`. */
  private emitStreamedPiece(task: TaskStore, piece: StreamedPiece): Promise<unknown> {
    this.countLanded(piece.info);
    const holds: Promise<unknown>[] = [];
    this.events.emit(`piece:${task.id}`, task, piece.info, piece.data, (h: Promise<unknown>) => holds.push(h));
    return Promise.allSettled(holds);
  }

  private countLanded(p: PieceInfo): void {
    const type = p.parentId ? "REMOTE_PEER" : "BACK_TO_SOURCE";
    this.metrics?.downloadTraffic.inc({ type }, p.length);
    // The store stamps a piece when its request went out and when its bytes were written.
    this.metrics?.downloadPieceDuration.observe({ type }, Math.max(0, p.finishedAt - p.createdAt));
  }

  /**
   * One download of a task. An origin that changed mid-way leaves a task of two versions,
   * worth nothing: it is dropped (never left as a cache entry), and either the failure is
   * reported or, with download.restartOnOriginChange, the task starts once more from scratch
   * with the new version — unless a requester already passed bytes of the old one on.
   */
  private async run(taskId: string, req: DownloadRequest): Promise<TaskStore> {
    for (let restarted = false; ; restarted = true) {
      try {
        return await this.attempt(taskId, req, restarted);
      } catch (e) {
        if (!(e instanceof DownloadError && e.kind === "origin_changed")) throw e;
        await this.storage.delete(taskId).catch((err: unknown) => this.log.warn({ taskId, err: errorMessage(err) }, "cannot drop a task whose origin changed"));
        const live = this.live.get(taskId) ?? 0;
        if (restarted || !this.opts.restartOnOriginChange || live > 0) {
          if (this.opts.restartOnOriginChange && !restarted && live > 0) this.log.warn({ taskId }, "origin changed, but a requester already passed bytes on: not restarting");
          throw e;
        }
        this.log.warn({ taskId, url: req.download.url, err: e.message }, "origin changed during the download; restarting the task from scratch (download.restartOnOriginChange)");
      }
    }
  }

  private async attempt(taskId: string, req: DownloadRequest, restarted: boolean): Promise<TaskStore> {
    const d = req.download;
    const backend = (req.remote ? this.backends.remote : this.backends.local).for(d.url, d);
    const headers = { ...d.requestHeader };

    // Learn the content length: from the origin, as Dragonfly's clients do, or from the
    // scheduler when the origin is down but the swarm has the task.
    let contentLength: number | undefined;
    let responseHeader: Record<string, string> = {};
    let statError: BackendError | undefined;
    const known = this.storage.get(taskId);
    if (known) {
      contentLength = known.meta.contentLength;
      responseHeader = known.meta.responseHeader;
    } else {
      try {
        const st = await backend.stat({ url: d.url, headers, signal: req.signal });
        contentLength = st.contentLength;
        responseHeader = st.headers;
        if (!st.rangeSupported) this.noRange.add(taskId);
        this.sourceUrls.set(taskId, st.url);
      } catch (e) {
        statError = e instanceof BackendError ? e : new BackendError(String(e), undefined);
        // The origin's refusal (401, 403, 404, …) is its answer for this requester: the swarm
        // must not hand a private blob to a client the origin turned away. Only an origin
        // that is down or unreachable lets the swarm stand in for it.
        const refused = statError.statusCode !== undefined && statError.statusCode >= 400 && statError.statusCode < 500 && statError.statusCode !== 408 && statError.statusCode !== 429;
        if (refused) throw new DownloadError(statError.message, "backend", statError);
        contentLength = await this.contentLengthFromScheduler(taskId);
        if (contentLength === undefined) throw new DownloadError(statError.message, "backend", statError);
      }
    }
    if (contentLength === undefined) {
      // The origin answered without a length (chunked, close-delimited): a peer that read it
      // whole told the scheduler; otherwise this peer reads it whole.
      contentLength = await this.contentLengthFromScheduler(taskId);
      if (contentLength === undefined) {
        try {
          return await this.unknownLength(taskId, req, backend, headers);
        } finally {
          this.noRange.delete(taskId);
          this.sourceUrls.delete(taskId);
        }
      }
      this.log.info({ taskId, contentLength }, "origin does not tell the content length; the swarm knows it");
    }

    // The first answer fixes the version (pin.ts); an origin that did not answer leaves it to
    // the parents (pin-state.ts), whose version a peer that holds nothing yet adopts.
    const pin = known?.meta.pin ?? pinFromHeaders(responseHeader, contentLength);
    const faults = new DiskFaults(taskId, this.storage.rootFor(this.opts.tier), this.log);
    const task = await this.openTask(this.newTask(taskId, d, contentLength, responseHeader, pin));
    // Pieces on disk are of the recorded pin; a record without one vouches for nothing. After a
    // restart the origin's new version is the one wanted: parents of the old one are refused.
    const held = task.finishedCount() > 0;
    this.pins.set(taskId, new TaskPin(task.meta.pin ?? pin, held || restarted, !held || task.meta.pin !== undefined));
    this.events.emit(`started:${taskId}`, task, task.finished());

    try {
      await this.fillWithRoom(task, req, backend, headers, statError, faults);
      await this.verify(task);
      await this.succeeded(task);
      return task;
    } catch (e) {
      const failure = await this.failureOf(task, e, faults);
      await this.leaveFailed(task, failure, faults);
      throw failure;
    } finally {
      this.noRange.delete(taskId);
      this.sourceUrls.delete(taskId);
      this.streamedDigests.delete(taskId);
      this.pins.delete(taskId);
    }
  }

  /** Records a verified task as succeeded; its content then warms for the children that ask next. */
  private async succeeded(task: TaskStore): Promise<void> {
    await task.update({ state: "succeeded", finishedAt: Date.now(), failure: undefined });
    this.storage.warmForChildren(task.id);
  }

  /**
   * A task whose origin does not tell its length (unknown-length.ts): one response read whole
   * into a staging file, the requester's digest checked on the bytes, and only then, with the
   * length known, the task created from the staged bytes, finished, and announced to the
   * scheduler as a complete back-to-source download, so later peers get it P2P. Any failure
   * leaves neither the staged bytes nor a task behind.
   */
  private async unknownLength(taskId: string, req: DownloadRequest, backend: Backend, headers: Record<string, string>): Promise<TaskStore> {
    const d = req.download;
    if (d.disableBackToSource) throw new DownloadError(`${d.url}: the origin does not tell the content length, no peer has the task, and back-to-source is disabled`, "unavailable");
    const expected = d.digest ? parseDigest(d.digest) : undefined;
    this.log.info({ taskId, url: d.url }, "origin does not tell the content length; reading it in one response");
    // Asked before the first byte is staged: a task to be sealed is staged sealed (the task
    // itself asks again when it opens, from the key source's cache).
    const sealed = (await this.sealingKey(taskId, d.application)) !== undefined;
    let staged: StagedContent;
    try {
      staged = await this.rideOutage(() => stageFromOrigin({ backend, url: d.url, headers, signal: req.signal, dir: this.storage.stagingDir(this.opts.tier), digestAlgorithm: expected?.algorithm, sealed }), req);
    } catch (e) {
      if (e instanceof BackendError) throw backendFailure(e);
      if (isNoSpace(e)) throw new DownloadError(`no space left in ${this.storage.stagingDir(this.opts.tier)} for task ${taskId}: ${errorMessage(e)}`, "no_space");
      throw e;
    }
    try {
      if (expected && staged.digest !== `${expected.algorithm}:${expected.hex}`) {
        throw new DownloadError(`digest mismatch: expected ${expected.algorithm}:${expected.hex}, got ${staged.digest ?? "none"}`, "invalid");
      }
      const contentLength = staged.length;
      // One response: one version by construction, whatever validators it carried.
      const task = await this.openTask(this.newTask(taskId, d, contentLength, staged.headers, pinFromHeaders(staged.headers, contentLength)));
      const { pieceLength } = task.meta;
      this.events.emit(`started:${taskId}`, task, task.finished());
      try {
        for (let n = 0; n < task.meta.pieceCount; n++) {
          const { offset, length } = pieceRange(n, contentLength, pieceLength);
          const buf = allocPieceBuffer(length);
          await staged.read(offset, buf);
          this.emitPiece(task, await task.writePiece(n, buf, Date.now(), req.signal));
          await this.pace(req, length);
        }
        if (staged.digest !== undefined) this.streamedDigests.set(taskId, staged.digest);
        await this.verify(task);
        await this.succeeded(task);
      } catch (e) {
        await this.storage.delete(taskId).catch((err: unknown) => this.log.warn({ taskId, err: errorMessage(err) }, "removing a failed task failed"));
        if (isNoSpace(e)) throw this.noSpaceError(taskId, contentLength + METADATA_SLACK, await freeBytes(this.storage.rootFor(this.opts.tier)).catch(() => 0));
        throw e;
      } finally {
        this.streamedDigests.delete(taskId);
      }
      await this.announceFinished(task, req);
      return task;
    } finally {
      await staged.discard();
    }
  }

  /**
   * Tells the scheduler about a task this peer holds whole without it having a peer for it (read
   * from an origin without a content length, or a seed peer triggered for a task it holds):
   * registered with its layout, every piece reported as back-to-source, so the scheduler knows the length
   * and offers this peer as a parent. Tiny tasks never involve the scheduler, as in Dragonfly.
   * Best effort: the download succeeded whatever the scheduler says.
   */
  private async announceFinished(task: TaskStore, req: DownloadRequest): Promise<void> {
    if (task.meta.contentLength <= MIN_PIECE_LENGTH) return;
    const lost = new Set<string>();
    for (let scheduler = this.schedulers.forTask(task.id); scheduler; ) {
      const peerId = newPeerId(this.opts.ip, this.opts.hostname, this.opts.seedPeer);
      const session = new AnnouncePeerSession(scheduler.client, { hostId: this.opts.hostId, taskId: task.id, peerId });
      try {
        session.register(registration(req.download, task, true));
        const res = await session.next(Math.min(this.opts.scheduleTimeoutMs, 30_000));
        if (res?.$case !== "needBackToSourceResponse") throw new Error(`scheduler answered ${res?.$case ?? "nothing"} to a peer that holds the task`);
        session.backToSourceStarted();
        for (const p of task.finished()) session.pieceBackToSourceFinished(toProtoPiece(p, TrafficType.BACK_TO_SOURCE));
        session.backToSourceFinished();
        await this.closeAfterFinished(session);
        return;
      } catch (e) {
        session.cancel();
        // A scheduler that is gone hands the task to the next one, which is who should know.
        const next = schedulerGone(session.streamError) ? this.schedulers.failover(task.id, scheduler.addr, session.streamError, lost) : undefined;
        if (!next) {
          this.log.warn({ taskId: task.id, err: errorMessage(e) }, "could not announce a task held here to the scheduler; peers will read the origin themselves");
          return;
        }
        scheduler = next;
      }
    }
  }

  /** The record of a task about to be opened, in the layout every peer computes from its length. */
  private newTask(taskId: string, d: Download, contentLength: number, responseHeader: Record<string, string>, pin: OriginPin): NewTask {
    const pieceLength = d.pieceLength ?? pieceLengthFor(contentLength);
    return {
      id: taskId,
      url: d.url,
      tag: d.tag,
      application: d.application,
      filteredQueryParams: d.filteredQueryParams,
      requestHeader: {},
      contentLength,
      pieceLength,
      pieceCount: pieceCount(contentLength, pieceLength),
      responseHeader,
      pin,
      digest: d.digest || undefined,
      tier: this.opts.tier,
    };
  }

  /** Bytes the task still needs on disk: its missing pieces, plus room for its records. */
  private bytesNeeded(contentLength: number, task: TaskStore | undefined): number {
    const have = task ? task.finished().reduce((s, p) => s + p.length, 0) : 0;
    return contentLength - have + METADATA_SLACK;
  }

  private noSpaceError(taskId: string, bytes: number, free: number): DownloadError {
    const dir = this.storage.rootFor(this.opts.tier);
    return new DownloadError(`no space left in ${dir} for task ${taskId}: it needs ${bytes} bytes (${mib(bytes)}), ${free} bytes (${mib(free)}) are free, and evicting the cached tasks not in use cannot free enough`, "no_space");
  }

  /** Evicts cached tasks (gc.ts order) until `bytes` are free for the task, or fails clearly. */
  private async roomFor(taskId: string, bytes: number): Promise<void> {
    const room = await makeRoom(this.storage, this, this.opts.tier, bytes, taskId, this.log);
    if (!room.enough) throw this.noSpaceError(taskId, bytes, room.free);
    this.log.info({ taskId, needed: bytes, free: room.free, evicted: room.evicted.length }, "made room for a download on a full disk");
  }

  /** The key task `taskId` is sealed at rest with (storage.encryption); undefined: stored in plaintext. */
  private async sealingKey(taskId: string, application: string | undefined): Promise<TenantKey | undefined> {
    try {
      return await this.storage.sealingKeyFor(application);
    } catch (e) {
      throw new DownloadError(`task ${taskId} may belong to a tenant whose pieces are sealed at rest (storage.encryption), and ${errorMessage(e)}`, "unavailable");
    }
  }

  /**
   * Opens the task's store. Creating a task preallocates all its bytes, so a full disk shows
   * here first: ENOSPC makes room by evicting cached tasks and tries once more.
   */
  private async openTask(t: NewTask): Promise<TaskStore> {
    const key = await this.sealingKey(t.id, t.application);
    try {
      return await this.storage.open(t, key);
    } catch (e) {
      if (!isNoSpace(e)) throw e;
      const bytes = this.bytesNeeded(t.contentLength, this.storage.get(t.id));
      this.log.warn({ taskId: t.id, needed: bytes, err: errorMessage(e) }, "no space left for a new task; evicting cached tasks");
      await this.roomFor(t.id, bytes);
      try {
        return await this.storage.open(t, key);
      } catch (again) {
        if (!isNoSpace(again)) throw again;
        throw this.noSpaceError(t.id, bytes, await freeBytes(this.storage.rootFor(this.opts.tier)).catch(() => 0));
      }
    }
  }

  /**
   * Fills the task; an attempt stopped by ENOSPC (a piece write or a record append on a full
   * disk) makes room for the bytes still missing and runs once more. Each attempt runs under
   * a signal that storage faults fire, so one ENOSPC stops every piece in flight.
   */
  private async fillWithRoom(task: TaskStore, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, statError: BackendError | undefined, faults: DiskFaults): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const signal = faults.attempt(req.signal);
      try {
        return await this.fill(task, { ...req, signal }, backend, headers, statError, faults);
      } catch (e) {
        if (!faults.noSpace || attempt > 1 || req.signal?.aborted) throw e;
        const bytes = this.bytesNeeded(task.meta.contentLength, task);
        this.log.warn({ taskId: task.id, needed: bytes, err: faults.noSpace.message }, "no space left while downloading; evicting cached tasks and trying again");
        await this.roomFor(task.id, bytes);
      }
    }
  }

  /** The error a failed download reports: a storage fault's own, when one stopped it. */
  private async failureOf(task: TaskStore, e: unknown, faults: DiskFaults): Promise<unknown> {
    if (e instanceof DownloadError && e.kind === "no_space") return e;
    if (faults.exhausted) return new DownloadError(faults.exhausted.message, "internal");
    if (faults.noSpace) return this.noSpaceError(task.id, this.bytesNeeded(task.meta.contentLength, task), await freeBytes(faults.dir).catch(() => 0));
    return e;
  }

  /**
   * Records a failed task, or removes it (retention.ts says which): a task kept for a resume
   * stays as failed; one that is not is deleted now, or once the children downloading from
   * it are done.
   */
  private async leaveFailed(task: TaskStore, failure: unknown, faults: DiskFaults): Promise<void> {
    const message = errorMessage(failure);
    const cause = failureCause({
      kind: failure instanceof DownloadError ? failure.kind : "internal",
      originStatus: failure instanceof DownloadError ? failure.backend?.statusCode : failure instanceof BackendError ? failure.statusCode : undefined,
      noSpace: faults.noSpace !== undefined,
      deviceIo: faults.exhausted !== undefined,
    });
    const verified = task.finishedCount();
    if (keepForResume(verified, cause)) {
      await task.update({ state: "failed", failure: message }).catch(() => undefined);
      this.log.info({ taskId: task.id, verified, pieces: task.meta.pieceCount }, "failed task kept for a resume");
      return;
    }
    const remove = () => {
      // A download of the task that started since owns it now.
      const t = this.storage.get(task.id);
      if (t !== task || this.running.has(task.id) || t.meta.state !== "failed") return;
      this.storage.delete(task.id).catch((e: unknown) => this.log.warn({ taskId: task.id, err: errorMessage(e) }, "removing a failed task failed"));
    };
    this.log.info({ taskId: task.id, cause, verified }, "removing failed task");
    if (!this.uploads.active(task.id)) {
      await this.storage.delete(task.id).catch((e: unknown) => this.log.warn({ taskId: task.id, err: errorMessage(e) }, "removing a failed task failed"));
      return;
    }
    await task.update({ state: "failed", failure: message }).catch(() => undefined);
    this.uploads.whenIdle(task.id, remove);
  }

  private missing(task: TaskStore): Set<number> {
    const have = new Set(task.finished().map((p) => p.number));
    const out = new Set<number>();
    for (let n = 0; n < task.meta.pieceCount; n++) if (!have.has(n)) out.add(n);
    return out;
  }

  private async fill(task: TaskStore, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, statError: BackendError | undefined, faults: DiskFaults): Promise<void> {
    const d = req.download;
    if (this.missing(task).size === 0) return;
    const canBackToSource = !d.disableBackToSource && statError === undefined;
    const toSource = () => {
      if (d.disableBackToSource) throw new DownloadError("cannot download: the swarm could not serve the task and back-to-source is disabled", "unavailable");
      return this.backToSource(task, req, backend, headers, undefined, faults);
    };

    // Tiny tasks never involve the scheduler, as in Dragonfly, unless the requester shares them (swarmSmall).
    if (task.meta.contentLength <= MIN_PIECE_LENGTH && canBackToSource && !d.needBackToSource && !req.swarmSmall) return toSource();
    // Schedulers this download lost (gone mid-conversation): each one's task moved to the next
    // scheduler on the ring, so the conversation starts again there, at most once per scheduler.
    const lost = new Set<string>();
    for (let scheduler = this.schedulers.forTask(task.id); ; ) {
      if (!scheduler) return toSource();
      const peerId = newPeerId(this.opts.ip, this.opts.hostname, this.opts.seedPeer);
      const session = new AnnouncePeerSession(scheduler.client, { hostId: this.opts.hostId, taskId: task.id, peerId });
      const client = scheduler.client;
      const vouched = new VouchedDigests({ statTask: () => this.statTask(client, task.id), minIntervalMs: VOUCHED_REFRESH_MS, log: this.log });
      try {
        await this.converse(session, task, req, backend, headers, peerId, faults, vouched, { addr: scheduler.addr, lost });
        return;
      } catch (e) {
        if (e instanceof DownloadError && e.kind !== "unavailable") throw e;
        session.cancel();
        // Stopped on purpose (the requester gave up, or a storage fault): not a reason to go
        // back to source, which would only fail at once under the same signal.
        if (req.signal?.aborted) throw e;
        if (this.missing(task).size === 0) return;
        if (schedulerGone(session.streamError)) {
          const next = this.schedulers.failover(task.id, scheduler.addr, session.streamError, lost);
          if (next) {
            // A new peer there: the pieces held stay, and are reported after registering.
            this.log.warn({ taskId: task.id, scheduler: scheduler.addr, next: next.addr, held: task.finishedCount(), err: errorMessage(e) }, "scheduler is gone; moving the task to the next scheduler");
            scheduler = next;
            continue;
          }
        }
        this.log.warn({ taskId: task.id, err: errorMessage(e) }, "scheduler conversation failed; going back to source");
        if (statError) throw new DownloadError(statError.message, "backend", statError);
        return toSource();
      } finally {
        vouched.close();
      }
    }
  }

  /** The AnnouncePeer conversation (wire-protocol.md §3.2 a–d). */
  private async converse(session: AnnouncePeerSession, task: TaskStore, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, peerId: string, faults: DiskFaults, vouched: VouchedDigests, scheduler: { addr: string; lost: Set<string> }): Promise<void> {
    const d = req.download;
    session.register(registration(d, task, d.needBackToSource));
    // Pieces held already (a resumed task, or one whose scheduler was lost mid-way and that
    // registered anew here) are this peer's, read from its own store: the scheduler counts them
    // for ranking us as a parent.
    reportHeld(session, task, false);
    let rounds = 0;
    // At most one outstanding session.next(): a second reader would steal responses. A read
    // started while a round runs is carried over to the conversation loop (or the close).
    let pending: Promise<Read> | undefined;
    const read = (): Promise<Read> => {
      const at = Date.now();
      return session.next(this.opts.scheduleTimeoutMs).then(
        (res): Read => ({ res, at }),
        (err: unknown): Read => ({ err, at }),
      );
    };
    /** When we last asked the scheduler something (register / reschedule). */
    let askedAt = Date.now();
    /** A response that arrived mid-round and is not a parent top-up: handled after the round. */
    let deferred: Read | undefined;
    /** Stalls per parent over all rounds of this download (see RoundDeps.stalls). */
    const stalls = new Map<string, number>();
    for (;;) {
      const r = deferred ?? (await (pending ?? read()));
      deferred = undefined;
      pending = undefined;
      // A read begun during the round, before our reschedule, may time out early: wait afresh.
      if ("err" in r && !session.streamError && r.at < askedAt) continue;
      if ("err" in r) throw new DownloadError(`scheduler: ${r.err instanceof Error ? r.err.message : String(r.err)}`, "unavailable");
      const res = r.res;
      if (!res) throw new DownloadError("scheduler ended the announce stream before the download finished", "unavailable");
      switch (res.$case) {
        case "emptyTaskResponse":
          session.started();
          session.finished();
          session.close();
          return;
        case "metadataOnlyResponse":
          throw new DownloadError("scheduler answered metadata-only for a task we do not hold", "unavailable");
        case "needBackToSourceResponse": {
          if (d.disableBackToSource) {
            session.peerFailed("back-to-source is disabled");
            session.close();
            throw new DownloadError("scheduler asked us to go back to source, but back-to-source is disabled", "unavailable");
          }
          session.backToSourceStarted();
          const reports = this.followSchedulers(session, task, req, scheduler.addr, scheduler.lost);
          try {
            await this.backToSource(task, req, backend, headers, reports, faults);
          } catch (e) {
            reports.stop();
            const be = e instanceof DownloadError ? e.backend : e instanceof BackendError ? e : undefined;
            reports.current.pieceBackToSourceFailed(undefined, { message: errorMessage(e), statusCode: be?.statusCode, header: be?.headers });
            reports.current.backToSourceFailed(errorMessage(e));
            reports.current.close();
            throw e instanceof DownloadError ? e : be ? backendFailure(be) : new DownloadError(errorMessage(e), "internal");
          }
          // A move under way is answered first: "finished" goes to the scheduler that has us.
          await reports.settled;
          reports.stop();
          reports.current.backToSourceFinished();
          await this.closeAfterFinished(reports.current);
          return;
        }
        case "normalTaskResponse": {
          rounds++;
          const parents = [...res.normalTaskResponse.candidateParents];
          if (rounds > this.opts.maxScheduleCount) {
            session.peerFailed("max schedule count exceeded");
            session.close();
            throw new DownloadError("max schedule count exceeded", "unavailable");
          }
          session.started();
          // The origin's digests of what the parents hold, before the first piece is picked.
          vouched.want();
          const links = this.parentLinks.round();
          const round = this.newRound(session, task, parents, peerId, faults, stalls, vouched, links, req);
          if (!round) {
            session.finished();
            await this.closeAfterFinished(session);
            return;
          }
          // Read the scheduler while the round runs: a NormalTaskResponse now is a top-up
          // with parents that started serving since (the full list; new ones join the round).
          const running = round
            .run(req.signal)
            .finally(() => links.end())
            .then((done) => ({ done }));
          let reading = true;
          let done: boolean;
          for (;;) {
            pending ??= reading ? read() : undefined;
            const next = await (pending ? Promise.race([running, pending]) : running);
            if ("done" in next) {
              done = next.done;
              break;
            }
            pending = undefined;
            if ("err" in next) {
              // A read timing out while pieces flow is normal; a broken stream is not, but the
              // round still finishes what it can before we go back to source for the rest.
              if (session.streamError) {
                reading = false;
                deferred = next;
              }
              continue;
            }
            if (next.res?.$case === "normalTaskResponse") {
              const fresh = next.res.normalTaskResponse.candidateParents;
              const added = round.addParents(fresh);
              for (const p of fresh) if (!parents.some((q) => q.id === p.id)) parents.push(p);
              if (added > 0) this.log.debug({ taskId: task.id, added }, "scheduler added parents to the running round");
              continue;
            }
            reading = false;
            deferred = next;
          }
          if (done) {
            session.finished();
            await this.closeAfterFinished(session, pending);
            return;
          }
          if (!deferred) {
            askedAt = Date.now();
            session.reschedule(parents, "not all pieces are downloaded from parent");
          }
          break;
        }
      }
    }
  }

  /**
   * The reports of a back-to-source download, which does not read its scheduler: when that
   * scheduler goes away mid-way, the download goes on, and the peer registers anew with the
   * scheduler the task moved to (issue 26) as a back-to-source peer holding what it fetched,
   * so that scheduler's peers get the task from it rather than from the origin.
   */
  private followSchedulers(first: AnnouncePeerSession, task: TaskStore, req: DownloadRequest, addr: string, lost: Set<string>) {
    let stopped = false;
    const reports = {
      current: first,
      settled: Promise.resolve(),
      stop: () => {
        stopped = true;
      },
      pieceBackToSourceFinished: (piece: Piece) => reports.current.pieceBackToSourceFinished(piece),
    };
    const follow = (from: AnnouncePeerSession, fromAddr: string) =>
      from.onStreamError((err) => {
        if (stopped || req.signal?.aborted || !schedulerGone(err)) return;
        const next = this.schedulers.failover(task.id, fromAddr, err, lost);
        // Nobody left to tell: the download goes on unreported, as without a scheduler.
        if (!next) return;
        const peerId = newPeerId(this.opts.ip, this.opts.hostname, this.opts.seedPeer);
        const s = new AnnouncePeerSession(next.client, { hostId: this.opts.hostId, taskId: task.id, peerId });
        s.register(registration(req.download, task, true));
        // Reports go to the new session from now on; the held pieces cover those the old one lost.
        reports.current = s;
        reportHeld(s, task, true);
        this.log.warn({ taskId: task.id, scheduler: fromAddr, next: next.addr, held: task.finishedCount(), err: errorMessage(err) }, "scheduler is gone; the back-to-source download moves to the next scheduler");
        reports.settled = s.next(Math.min(this.opts.scheduleTimeoutMs, 30_000)).then(
          (res) => {
            if (res?.$case === "needBackToSourceResponse") s.backToSourceStarted();
            else this.log.warn({ taskId: task.id, scheduler: next.addr, answer: res?.$case ?? "nothing" }, "the next scheduler did not take the back-to-source download");
          },
          (e: unknown) => this.log.warn({ taskId: task.id, scheduler: next.addr, err: errorMessage(e) }, "the next scheduler did not take the back-to-source download"),
        );
        follow(s, next.addr);
      });
    follow(first, addr);
    return reports;
  }

  /** Lets the scheduler process our last report before the stream goes away. */
  private async closeAfterFinished(session: AnnouncePeerSession, pending?: Promise<Read>): Promise<void> {
    session.close();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 5000);
    });
    await Promise.race([pending ?? session.next(5000).catch(() => undefined), grace]).finally(() => clearTimeout(timer));
  }

  /** A round over the missing pieces, or undefined when nothing is missing. */
  private newRound(session: AnnouncePeerSession, task: TaskStore, parents: Peer[], peerId: string, faults: DiskFaults, stalls: Map<string, number>, vouched: VouchedDigests, links: RoundLinks, req: DownloadRequest): PieceRound | undefined {
    const { signal } = req;
    const missing = this.missing(task);
    if (missing.size === 0) return undefined;
    return new PieceRound(
      {
        taskId: task.id,
        hostId: this.opts.hostId,
        peerId,
        concurrency: this.opts.concurrentPieceCount,
        idleTimeoutMs: this.opts.collectedPieceTimeoutMs,
        pieceLength: task.meta.pieceLength,
        pieceTimeoutMs: this.opts.pieceTimeoutMs,
        stalls,
        uploadClients: this.uploadClients,
        // Our own storage faults count against this download (see DiskFaults), not the parent.
        fetch: (h, n, deadlines, expectedDigest) => {
          const parent = parentAddress(h, this.opts.protocol);
          links.use(parent);
          return task.fetchPiece(parent, n, h.peerId, deadlines, signal, expectedDigest).catch((e: unknown) => {
            faults.observe(e);
            throw e;
          });
        },
        race: () => {
          const r = task.race(this.opts.pieceTimeoutMs, signal);
          const done = r.done.catch((e: unknown) => {
            faults.observe(e);
            throw e;
          });
          const add: ParentRace["add"] = (h, n, deadlines, expectedDigest) => {
            const parent = parentAddress(h, this.opts.protocol);
            links.use(parent);
            r.add(parent, n, h.peerId, deadlines, expectedDigest);
          };
          return { add, started: r.started, done, stalled: () => r.stalled() };
        },
        vouched,
        onPiece: (info) => {
          session.pieceFinished(toProtoPiece(info, TrafficType.REMOTE_PEER));
          this.emitPiece(task, info);
        },
        pace: (bytes) => this.pace(req, bytes),
        onPieceFailed: (n, last) => session.pieceFailed(n, last.peerId, true),
        onBadParent: (h, e, n) => {
          const reason = isNativeError(e) && e.code === "DF_STALLED" ? "stalled" : "corrupt";
          // Told the way Dragonfly's client reports a failed piece download: the scheduler
          // then never offers this parent to us again (a temporary failure blocks it per peer).
          session.pieceFailed(n, h.peerId, true);
          this.metrics?.badParentTotal.inc({ reason });
          this.events.emit("badParent", { taskId: task.id, parentId: h.peerId, hostId: h.hostId, reason });
          const why = reason === "stalled" ? "parent stalled twice (sent nothing within its deadline)" : "parent served a piece that failed verification";
          this.log.warn({ taskId: task.id, parent: h.peerId, host: h.ip, piece: n, err: errorMessage(e) }, `${why}; dropped for this task`);
        },
        admit: (peer) => this.admitParent(task, peer),
        log: this.log,
      },
      parents,
      missing,
    );
  }

  /** The content version a running download assembles (a stand-in outside a run). */
  private pinState(task: TaskStore): TaskPin {
    return this.pins.get(task.id) ?? new TaskPin(task.meta.pin ?? pinFromHeaders(task.meta.responseHeader, task.meta.contentLength), true, task.meta.pin !== undefined);
  }

  /**
   * Whether a parent's pieces may join ours: its task must be of our version, or we adopt its
   * version while we hold nothing (pin-state.ts). One StatLocalTask per parent and download.
   */
  private async admitParent(task: TaskStore, peer: Peer): Promise<boolean> {
    const state = this.pins.get(task.id);
    if (!state || !peer.host) return true;
    const decided = state.decision(peer.id);
    if (decided !== undefined) return decided;
    const theirs = await askParent(this.uploadClients, peer.host, task.id, 5000);
    const meanwhile = state.decision(peer.id);
    if (meanwhile !== undefined) return meanwhile;
    const a = state.admit(peer.id, theirs?.pin);
    if (!a.use) {
      this.log.warn({ taskId: task.id, parent: peer.id, why: a.reason }, "parent holds another version of the content; not using it");
      return false;
    }
    if (a.adopted && theirs) {
      // Our children read our version from these headers (StatLocalTask) as we read theirs.
      this.log.info({ taskId: task.id, parent: peer.id, pin: describePin(theirs.pin) }, "joining the version of the content the swarm holds");
      await task.update({ pin: theirs.pin, responseHeader: theirs.responseHeader });
    }
    return true;
  }

  /** Back-to-source in a span of its own: the origin's requests carry its trace context (../../common/tracing.ts). */
  private backToSource(task: TaskStore, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, session: BackToSourceReports | undefined, faults: DiskFaults): Promise<void> {
    const attributes = { "dragonfly.task.id": task.id, "url.full": redactUrl(req.download.url) };
    return inSpan("BackToSource", attributes, () => this.fetchFromSource(task, req, backend, headers, session, faults), SpanKind.CLIENT);
  }

  private async fetchFromSource(task: TaskStore, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, session: BackToSourceReports | undefined, faults: DiskFaults): Promise<void> {
    const state = this.pinState(task);
    // From here on pieces of this version land: parents of another one are refused.
    state.settled = true;
    // An origin without a validator (no ETag, no Last-Modified) cannot be pinned across
    // requests: two ranged GETs may see two versions and nothing would tell. Every byte then
    // comes from one response. So it does when pieces held here are not vouched for by the
    // pin (a parent that could not tell its version): that response checks each of them.
    if (this.noRange.has(task.id) || !hasValidator(state.pin) || !state.vouched) return this.backToSourceWholeRefetching(task, req, backend, headers, session, state.pin, faults);
    const queue = [...this.missing(task)].sort((a, b) => a - b);
    if (queue.length === 0) return;
    let native: NativeOrigin | undefined;
    try {
      native = await this.nativeOrigin(task, req, backend, headers, state.pin);
    } catch (e) {
      if (e instanceof BackendError) throw backendFailure(e);
      throw e;
    }
    // The native origin's handle on the store goes when the pieces are in (or not).
    try {
      if (native && req.stream && queue.length === task.meta.pieceCount && task.meta.contentLength > 0) {
        // A fresh task streamed to a waiting client: one GET, pieces in order; whatever the
        // stream leaves missing (origin trouble mid-way) goes the per-piece way with its retries.
        try {
          await this.streamToStore(task, req, native.route, session);
        } catch (e) {
          if (e instanceof OriginChangedError) throw backendFailure(e);
          // ENOSPC (or the EIO budget spent) stops the download here; a lone EIO leaves its piece
          // missing, and the per-piece way below fetches it again.
          faults.observe(e);
          if (req.signal?.aborted) throw e instanceof DownloadError ? e : new DownloadError(errorMessage(e), "internal");
          this.streamedDigests.delete(task.id);
          this.log.warn({ taskId: task.id, err: errorMessage(e) }, "streaming from the origin failed; fetching the remaining pieces one by one");
        }
        queue.splice(0, queue.length, ...[...this.missing(task)].sort((a, b) => a - b));
        if (queue.length === 0) return;
      }
      let failure: unknown;
      const width = new BackToSourceWidth(Math.min(this.opts.concurrentPieceCount, Math.max(1, queue.length)));
      const workers: Promise<void>[] = [];
      let active = 0;
      const worker = async () => {
        active++;
        try {
          for (;;) {
            if (failure !== undefined || active > width.target) return;
            const n = queue.shift();
            if (n === undefined) return;
            try {
              const started = performance.now();
              const info = await this.rideOutage(() => (native ? this.pieceFromOrigin(native, n, req.signal) : this.pieceFromSource(task, n, req, backend, headers, state.pin)), req, () => failure !== undefined);
              session?.pieceBackToSourceFinished(toProtoPiece(info, TrafficType.BACK_TO_SOURCE));
              this.emitPiece(task, info);
              width.landed(performance.now() - started);
              await this.pace(req, info.length);
              // Not once the download failed: each new worker would return at once, leaving
              // `active` as it was, and this loop would spin forever.
              while (failure === undefined && active < width.target && queue.length > 0) workers.push(worker());
            } catch (e) {
              // A write the storage device failed (EIO): the piece is missing again and goes
              // back to the origin; ENOSPC or too many EIOs stop the download.
              if (faults.observe(e) === "refetch") {
                queue.push(n);
                continue;
              }
              failure ??= e;
            }
          }
        } finally {
          active--;
        }
      };
      workers.push(worker());
      for (let i = 0; i < workers.length; i++) await workers[i];
      if (failure !== undefined) {
        if (failure instanceof DownloadError) throw failure;
        if (failure instanceof BackendError) throw backendFailure(failure);
        throw new DownloadError(failure instanceof Error ? failure.message : "back-to-source failed", "internal");
      }
    } finally {
      native?.close();
    }
  }

  /**
   * Back-to-source in one response for the whole content (see backToSource): the native
   * ranged-from-0 stream where it can go, else one GET. Pieces already held are compared with
   * the response's bytes instead of being skipped unseen, so a difference (another version)
   * fails the task. An interrupted stream is retried from the start for the same reason: the
   * next response may be of another version, and the check catches that too.
   */
  private async backToSourceWhole(task: TaskStore, req: DownloadRequest, backend: Backend, headers: Record<string, string>, session: BackToSourceReports | undefined, pin: OriginPin): Promise<void> {
    if (this.missing(task).size === 0) return;
    try {
      const native = this.noRange.has(task.id) || task.meta.contentLength === 0 ? undefined : await this.nativeOrigin(task, req, backend, headers, pin);
      // Only its route is used (the stream writes through the task): its store handle goes now.
      native?.close();
      await this.rideOutage(() => (native ? this.streamToStore(task, req, native.route, session) : this.backToSourceStream(task, req, backend, headers, session, pin)), req);
    } catch (e) {
      if (e instanceof BackendError) throw backendFailure(e);
      throw e;
    }
  }

  /** outage.ts, with this daemon's backend.retryTimeout and the download's timeout. */
  private rideOutage<T>(fetch: () => Promise<T>, req: DownloadRequest, givenUp?: () => boolean): Promise<T> {
    const bounds = { budgetMs: this.opts.backendRetryTimeoutMs ?? 60_000, deadline: req.deadline, signal: req.signal, givenUp, url: req.download.url, log: this.log };
    return rideOutage(fetch, bounds, (e) => (e instanceof BackendError ? e : e instanceof DownloadError ? e.backend : undefined));
  }

  private async streamToStore(task: TaskStore, req: DownloadRequest, route: OriginRoute, session: BackToSourceReports | undefined): Promise<void> {
    this.streamedDigests.delete(task.id);
    const expected = task.meta.digest ? parseDigest(task.meta.digest) : undefined;
    // One GET to the origin, read natively to its last byte: counted, but not timed (the
    // histogram's other requests end at the origin's answer).
    const digest = await countBackendRequest(
      this.metrics,
      route.url,
      "GET",
      () =>
        streamFromOrigin({
          task,
          route,
          digestAlgorithm: expected?.algorithm,
          signal: req.signal,
          toBackendError: (e) => nativeToBackendError(route.url, e, req.signal),
          pace: (bytes) => this.pace(req, bytes),
          onPiece: (piece) => {
            session?.pieceBackToSourceFinished(toProtoPiece(piece.info, TrafficType.BACK_TO_SOURCE));
            return this.emitStreamedPiece(task, piece);
          },
        }),
      { timed: false },
    );
    if (digest !== undefined) this.streamedDigests.set(task.id, digest);
  }

  /**
   * backToSourceWhole, again after a write the storage device failed (EIO): the lost piece
   * comes back only with the whole response again (pieces already stored are compared, not
   * rewritten).
   */
  private async backToSourceWholeRefetching(task: TaskStore, req: DownloadRequest, backend: Backend, headers: Record<string, string>, session: BackToSourceReports | undefined, pin: OriginPin, faults: DiskFaults): Promise<void> {
    for (;;) {
      try {
        return await this.backToSourceWhole(task, req, backend, headers, session, pin);
      } catch (e) {
        if (faults.observe(e) !== "refetch") throw e;
      }
    }
  }

  /**
   * One GET, cut into pieces as the bytes arrive: for origins without Range support, and for
   * whole-content back-to-source where the native stream cannot go. Pieces held already are
   * compared with the bytes (sameAsHeld), not rewritten.
   */
  private async backToSourceStream(task: TaskStore, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, session: BackToSourceReports | undefined, pin: OriginPin): Promise<void> {
    const { contentLength, pieceLength } = task.meta;
    const res = await backend.get({ url: req.download.url, headers, signal: req.signal, pin });
    let number = 0;
    let buf = allocPieceBuffer(Math.min(pieceLength, contentLength));
    let filled = 0;
    let createdAt = Date.now();
    const flush = async () => {
      const held = task.piece(number);
      if (held) {
        try {
          sameAsHeld(req.download.url, held, buf, pin);
        } catch (e) {
          discard(res.body);
          throw e;
        }
      } else {
        const info = await task.writePiece(number, buf, createdAt, req.signal);
        session?.pieceBackToSourceFinished(toProtoPiece(info, TrafficType.BACK_TO_SOURCE));
        this.emitPiece(task, info);
      }
      await this.pace(req, buf.length);
      number++;
      const next = Math.min(pieceLength, contentLength - number * pieceLength);
      buf = next > 0 ? allocPieceBuffer(next) : Buffer.alloc(0);
      filled = 0;
      createdAt = Date.now();
    };
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) {
        if (number * pieceLength + filled >= contentLength) {
          discard(res.body);
          throw new BackendError(`${req.download.url}: origin sent more than ${contentLength} bytes`, res.statusCode);
        }
        const n = Math.min(buf.length - filled, chunk.length - off);
        chunk.copy(buf, filled, off, off + n);
        filled += n;
        off += n;
        if (filled === buf.length) await flush();
      }
    }
    if (number * pieceLength < contentLength) throw new BackendError(`${req.download.url}: origin sent ${number * pieceLength + filled} of ${contentLength} bytes`, res.statusCode, {}, true);
  }

  /**
   * Whether this task's pieces can be fetched by the native core (plain http with Range, and
   * object stores on a plain-http endpoint), and where from. The route's address is resolved and SSRF-checked by the backend now, once.
   */
  private async nativeOrigin(task: TaskStore, req: DownloadRequest, backend: Backend, headers: Record<string, string>, pin: OriginPin): Promise<NativeOrigin | undefined> {
    const fetchPiece = backend.fetchPiece?.bind(backend);
    if (!backend.route || !fetchPiece) return undefined;
    let url = this.sourceUrls.get(task.id);
    if (url === undefined) {
      // A resumed task skipped the stat: learn where the content lives now (redirects).
      // (https never goes native: the native client speaks no TLS.)
      if (new URL(req.download.url).protocol === "https:") return undefined;
      try {
        // With the pin: an origin that moved on since the pieces held were fetched says so now.
        const st = await backend.stat({ url: req.download.url, headers, signal: req.signal, pin });
        if (!st.rangeSupported) return undefined;
        url = st.url;
      } catch (e) {
        if (e instanceof OriginChangedError) throw e;
        return undefined; // the JS path reports the failure with its own retries
      }
    }
    const found = await backend.route(url, req.download.url, headers, req.signal);
    if (!found) return undefined;
    const route: OriginRoute = { ...found, pin };
    // Storage keeps its native store private; opening the same task directory again returns
    // the very instance it holds (one store per task directory per process).
    const store = openTaskStore({
      dataDir: dirname(dirname(task.contentPath)),
      taskId: task.id,
      contentLength: task.meta.contentLength,
      pieceLength: task.meta.pieceLength,
      tier: task.meta.tier === "memory" ? "tmpfs" : "disk",
    });
    this.log.debug({ taskId: task.id, addr: route.addr, url }, "back-to-source through the native origin client");
    return { route, fetch: (n, signal) => fetchPiece(route, store, n, signal), close: () => store.close() };
  }

  private async pieceFromOrigin(native: NativeOrigin, n: number, signal: AbortSignal | undefined): Promise<PieceInfo> {
    return pieceInfoOf(await native.fetch(n, signal));
  }

  private async pieceFromSource(task: TaskStore, n: number, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, pin: OriginPin): Promise<PieceInfo> {
    const { offset, length } = pieceRange(n, task.meta.contentLength, task.meta.pieceLength);
    const createdAt = Date.now();
    const res = await backend.get({ url: req.download.url, headers, signal: req.signal, range: { start: offset, length }, pin });
    // Block-aligned memory lets the store write it with O_DIRECT without another copy; whole
    // pieces' buffers are used again once their write resolved (piece-buffers.ts).
    const buf = this.pieceBuffers.take(length);
    try {
      let filled = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (filled + chunk.length > length) {
          discard(res.body);
          throw new BackendError(`${req.download.url}: origin sent more than the ${length} bytes of piece ${n}`, res.statusCode);
        }
        chunk.copy(buf, filled);
        filled += chunk.length;
      }
      if (filled !== length) throw new BackendError(`${req.download.url}: origin sent ${filled} of ${length} bytes for piece ${n}`, res.statusCode, {}, true);
      return await task.writePiece(n, buf, createdAt, req.signal);
    } finally {
      if (length === task.meta.pieceLength) this.pieceBuffers.give(buf);
    }
  }

  private async verify(task: TaskStore): Promise<void> {
    const missing = this.missing(task);
    if (missing.size > 0) throw new DownloadError(`${missing.size} of ${task.meta.pieceCount} pieces are missing`, "internal");
    if (!task.meta.digest) return;
    const expected = parseDigest(task.meta.digest);
    const actual = this.streamedDigests.get(task.id) ?? (await task.digest(expected.algorithm));
    if (actual !== `${expected.algorithm}:${expected.hex}`) {
      throw new DownloadError(`digest mismatch: expected ${expected.algorithm}:${expected.hex}, got ${actual}`, "invalid");
    }
  }

  /**
   * Whether a stored task's content has `digest`: by the whole-task digest recorded when the
   * task was verified, if it is of the same algorithm, else by reading every piece. A digest
   * that holds by reading is recorded, so the next hit with it reads nothing.
   */
  private async digestHolds(task: TaskStore, digest: string): Promise<boolean> {
    const want = parseDigest(digest);
    const wanted = `${want.algorithm}:${want.hex}`;
    const recorded = task.meta.digest ? parseDigest(task.meta.digest) : undefined;
    if (recorded?.algorithm === want.algorithm) return `${recorded.algorithm}:${recorded.hex}` === wanted;
    const holds = (await task.digest(want.algorithm)) === wanted;
    if (holds && !recorded) await task.update({ digest: wanted });
    return holds;
  }

  private async contentLengthFromScheduler(taskId: string): Promise<number | undefined> {
    const s = this.schedulers.forTask(taskId);
    if (!s) return undefined;
    // Any state will do: the first peer registered the length it learned from the origin,
    // and the pieces can still come from the peers downloading it now.
    const task = await this.statTask(s.client, taskId);
    return task && task.contentLength > 0 ? task.contentLength : undefined;
  }

  /** The scheduler's record of a task (StatTask); undefined when it cannot tell. */
  private statTask(client: Scheduler, taskId: string): Promise<TaskMessage | undefined> {
    return new Promise((resolve) => {
      client.statTask({ hostId: this.opts.hostId, taskId }, new Metadata(), { deadline: Date.now() + 5000 }, (err, task) => resolve(err ? undefined : task));
    });
  }
}
