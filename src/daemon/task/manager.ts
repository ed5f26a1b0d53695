// The download pipeline (DESIGN.md "How a download flows"): task id → local store → origin
// stat → tiny files straight from the origin → otherwise AnnouncePeer with the scheduler, P2P
// rounds from the parents it names, back-to-source when told to or when the scheduler is gone.
// Every piece lands through the native store and is reported to the scheduler at once, so
// children can pull it while we are still downloading. Concurrent requests for one task share
// one download.
import { EventEmitter } from "node:events";
import { dirname } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import type { Logger } from "../../common/logger.js";
import { peerId as newPeerId } from "../../common/ids.js";
import { pieceCount, pieceLengthFor, pieceRange, MIN_PIECE_LENGTH } from "../../common/piece.js";
import { TrafficType, type Download, type Peer, type Piece } from "../../gen/common/v2/common.js";
import { BackendError, type Backend, type BackendRegistry, type OriginRoute } from "../backend/index.js";
import { discard } from "../backend/http.js";
import { PieceRound, type Holder } from "../piece/round.js";
import type { UploadClientPool } from "../piece/parents.js";
import { AnnouncePeerSession, type SchedulerResponse } from "../scheduler/session.js";
import type { SchedulerPool } from "../scheduler/pool.js";
import type { DaemonMetrics } from "../metrics.js";
import type { Storage } from "../storage/storage.js";
import type { ParentAddress, PieceInfo, TaskStore } from "../storage/types.js";
import { allocPieceBuffer, openTaskStore, type NativePieceInfo } from "../../native/index.js";
import { nativeToBackendError } from "../backend/http.js";
import { parseDigest } from "./digest.js";
import { streamFromOrigin, type StreamedPiece } from "./stream.js";
import { taskIdOf } from "./task-id.js";
import { BackToSourceWidth } from "./width.js";

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
  /** `download.protocol`: how pieces are fetched from parents (default "tcp"). */
  protocol?: "tcp" | "quic";
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
}

export class DownloadError extends Error {
  override name = "DownloadError";
  constructor(
    message: string,
    /** gRPC-ish classification used by the services: "not_found", "invalid", "backend", "unavailable", "internal". */
    readonly kind: "not_found" | "invalid" | "backend" | "unavailable" | "internal",
    readonly backend?: BackendError,
  ) {
    super(message);
  }
}

/** The native back-to-source path for one task: pieces go origin → native store, never through JS. */
/** One scheduler read; `at` is when it started waiting (a read may outlive a round). */
type Read = ({ res: SchedulerResponse | undefined } | { err: unknown }) & { at: number };

interface NativeOrigin {
  route: OriginRoute;
  fetch(number: number, signal: AbortSignal | undefined): Promise<NativePieceInfo>;
}

const durationOf = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) });

export function toProtoPiece(p: PieceInfo, traffic: TrafficType): Piece {
  return {
    number: p.number,
    parentId: p.parentId || undefined,
    offset: p.offset,
    length: p.length,
    digest: p.digest,
    trafficType: traffic,
    cost: durationOf(Math.max(0, p.finishedAt - p.createdAt)),
    createdAt: new Date(p.createdAt),
  };
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
  /** Per-task piece events for joiners: `piece` (TaskStore, PieceInfo, data?, hold?), `started`. */
  readonly events = new EventEmitter().setMaxListeners(0);

  constructor(
    private readonly opts: TaskManagerOptions,
    private readonly storage: Storage,
    private readonly backends: { local: BackendRegistry; remote: BackendRegistry },
    private readonly schedulers: SchedulerPool,
    private readonly uploadClients: UploadClientPool,
    private readonly log: Logger,
    private readonly metrics?: DaemonMetrics,
  ) {}

  /** Whether a download of this task is in progress (GC must not evict it). */
  isRunning(taskId: string): boolean {
    return this.running.has(taskId);
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

    const existing = this.storage.get(taskId);
    if (existing && existing.meta.state === "succeeded" && existing.finished().length === existing.meta.pieceCount) {
      // A cache hit answers for the requester's digest too: a wrong one must never be reported
      // as success, and a cached task that fails it is dropped and fetched again (the fresh
      // download then verifies it, so a wrong digest still fails, after a fresh look).
      if (!d.digest || (await this.digestHolds(existing, d.digest))) {
        req.onStarted?.(existing, existing.finished());
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
    if (run) {
      // Join: report what exists now, then each piece as it lands.
      const live = this.storage.get(taskId);
      if (live) onStarted(live, live.finished());
      else this.events.once(`started:${taskId}`, onStarted);
    } else {
      run = this.run(taskId, req).finally(() => this.running.delete(taskId));
      this.running.set(taskId, run);
      this.events.once(`started:${taskId}`, onStarted);
    }
    this.events.on(`piece:${taskId}`, onPiece);
    try {
      const task = await run;
      // A requester that joined a running download verifies its own digest, if it differs.
      if (d.digest && !(await this.digestHolds(task, d.digest))) throw new DownloadError(`digest mismatch: expected ${d.digest}, the content has another`, "invalid");
      return task;
    } finally {
      this.events.off(`piece:${taskId}`, onPiece);
      this.events.off(`started:${taskId}`, onStarted);
    }
  }

  private emitPiece(task: TaskStore, p: PieceInfo): void {
    this.events.emit(`piece:${task.id}`, task, p);
  }

  /** A piece with its bytes: listeners that keep using them return promises through `hold`. */
  private emitStreamedPiece(task: TaskStore, piece: StreamedPiece): Promise<unknown> {
    const holds: Promise<unknown>[] = [];
    this.events.emit(`piece:${task.id}`, task, piece.info, piece.data, (h: Promise<unknown>) => holds.push(h));
    return Promise.allSettled(holds);
  }

  private async run(taskId: string, req: DownloadRequest): Promise<TaskStore> {
    const d = req.download;
    const backend = (req.remote ? this.backends.remote : this.backends.local).for(d.url);
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
    if (contentLength === undefined) throw new DownloadError(`${d.url}: origin did not tell the content length`, "backend");

    const pieceLength = d.pieceLength ?? pieceLengthFor(contentLength);
    const task = await this.storage.open({
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
      digest: d.digest || undefined,
      tier: this.opts.tier,
    });
    this.events.emit(`started:${taskId}`, task, task.finished());

    try {
      await this.fill(task, req, backend, headers, statError);
      await this.verify(task);
      await task.update({ state: "succeeded", finishedAt: Date.now(), failure: undefined });
      return task;
    } catch (e) {
      await task.update({ state: "failed", failure: e instanceof Error ? e.message : String(e) }).catch(() => undefined);
      throw e;
    } finally {
      this.noRange.delete(taskId);
      this.sourceUrls.delete(taskId);
      this.streamedDigests.delete(taskId);
    }
  }

  private missing(task: TaskStore): Set<number> {
    const have = new Set(task.finished().map((p) => p.number));
    const out = new Set<number>();
    for (let n = 0; n < task.meta.pieceCount; n++) if (!have.has(n)) out.add(n);
    return out;
  }

  private async fill(task: TaskStore, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, statError: BackendError | undefined): Promise<void> {
    const d = req.download;
    if (this.missing(task).size === 0) return;
    const canBackToSource = !d.disableBackToSource && statError === undefined;
    const toSource = () => {
      if (d.disableBackToSource) throw new DownloadError("cannot download: the swarm could not serve the task and back-to-source is disabled", "unavailable");
      return this.backToSource(task, req, backend, headers, undefined);
    };

    // Tiny tasks never involve the scheduler, as in Dragonfly.
    if (task.meta.contentLength <= MIN_PIECE_LENGTH && canBackToSource && !d.needBackToSource) return toSource();
    const scheduler = this.schedulers.forTask(task.id);
    if (!scheduler) return toSource();

    const peerId = newPeerId(this.opts.ip, this.opts.hostname, this.opts.seedPeer);
    const session = new AnnouncePeerSession(scheduler.client, { hostId: this.opts.hostId, taskId: task.id, peerId });
    try {
      await this.converse(session, task, req, backend, headers, peerId);
    } catch (e) {
      if (e instanceof DownloadError && e.kind !== "unavailable") throw e;
      session.cancel();
      if (this.missing(task).size === 0) return;
      this.log.warn({ taskId: task.id, err: e instanceof Error ? e.message : String(e) }, "scheduler conversation failed; going back to source");
      if (statError) throw new DownloadError(statError.message, "backend", statError);
      return toSource();
    }
  }

  /** The AnnouncePeer conversation (wire-protocol.md §3.2 a–d). */
  private async converse(session: AnnouncePeerSession, task: TaskStore, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, peerId: string): Promise<void> {
    const d = req.download;
    session.register({
      ...d,
      outputPath: undefined,
      actualContentLength: task.meta.contentLength,
      actualPieceLength: task.meta.pieceLength,
      actualPieceCount: task.meta.pieceCount,
      needBackToSource: d.needBackToSource,
    });
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
          try {
            await this.backToSource(task, req, backend, headers, session);
          } catch (e) {
            const be = e instanceof DownloadError ? e.backend : e instanceof BackendError ? e : undefined;
            session.pieceBackToSourceFailed(undefined, { message: e instanceof Error ? e.message : String(e), statusCode: be?.statusCode, header: be?.headers });
            session.backToSourceFailed(e instanceof Error ? e.message : String(e));
            session.close();
            throw e instanceof DownloadError ? e : new DownloadError(e instanceof Error ? e.message : String(e), be ? "backend" : "internal", be);
          }
          session.backToSourceFinished();
          await this.closeAfterFinished(session);
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
          const round = this.newRound(session, task, parents, peerId, req.signal);
          if (!round) {
            session.finished();
            await this.closeAfterFinished(session);
            return;
          }
          // Read the scheduler while the round runs: a NormalTaskResponse now is a top-up
          // with parents that started serving since (the full list; new ones join the round).
          const running = round.run(req.signal).then((done) => ({ done }));
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
  private newRound(session: AnnouncePeerSession, task: TaskStore, parents: Peer[], peerId: string, signal?: AbortSignal): PieceRound | undefined {
    const missing = this.missing(task);
    if (missing.size === 0) return undefined;
    return new PieceRound(
      {
        taskId: task.id,
        hostId: this.opts.hostId,
        peerId,
        concurrency: this.opts.concurrentPieceCount,
        idleTimeoutMs: this.opts.collectedPieceTimeoutMs,
        uploadClients: this.uploadClients,
        fetch: (h: Holder, n: number) => task.fetchPiece(parentAddress(h, this.opts.protocol), n, h.peerId, this.opts.pieceTimeoutMs, signal),
        race: () => {
          const r = task.race(this.opts.pieceTimeoutMs, signal);
          return { add: (h: Holder, n: number) => r.add(parentAddress(h, this.opts.protocol), n, h.peerId), started: r.started, done: r.done };
        },
        onPiece: (info) => {
          session.pieceFinished(toProtoPiece(info, TrafficType.REMOTE_PEER));
          this.emitPiece(task, info);
        },
        onPieceFailed: (n, last) => session.pieceFailed(n, last.peerId, true),
        onBadParent: (h, e) => {
          this.events.emit("badParent", { taskId: task.id, parentId: h.peerId, hostId: h.hostId });
          this.log.warn({ taskId: task.id, parent: h.peerId, host: h.ip, err: e instanceof Error ? e.message : String(e) }, "parent served a piece that failed verification; blocked for this task");
        },
        log: this.log,
      },
      parents,
      missing,
    );
  }

  private async backToSource(task: TaskStore, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, session: AnnouncePeerSession | undefined): Promise<void> {
    if (this.noRange.has(task.id)) return this.backToSourceStream(task, req, backend, headers, session);
    const queue = [...this.missing(task)].sort((a, b) => a - b);
    if (queue.length === 0) return;
    let native: NativeOrigin | undefined;
    try {
      native = await this.nativeOrigin(task, req, backend, headers);
    } catch (e) {
      if (e instanceof BackendError) throw new DownloadError(e.message, "backend", e);
      throw e;
    }
    if (native && req.stream && queue.length === task.meta.pieceCount && task.meta.contentLength > 0) {
      // A fresh task streamed to a waiting client: one GET, pieces in order; whatever the
      // stream leaves missing (origin trouble mid-way) goes the per-piece way with its retries.
      try {
        await this.streamToStore(task, req, native.route, session);
      } catch (e) {
        if (req.signal?.aborted) throw e instanceof DownloadError ? e : new DownloadError(e instanceof Error ? e.message : String(e), "internal");
        this.streamedDigests.delete(task.id);
        this.log.warn({ taskId: task.id, err: e instanceof Error ? e.message : String(e) }, "streaming from the origin failed; fetching the remaining pieces one by one");
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
            const info = await this.rideOutage(() => (native ? this.pieceFromOrigin(native, n, req.signal) : this.pieceFromSource(task, n, req, backend, headers)), req.signal, () => failure !== undefined);
            session?.pieceBackToSourceFinished(toProtoPiece(info, TrafficType.BACK_TO_SOURCE));
            this.emitPiece(task, info);
            width.landed(performance.now() - started);
            while (active < width.target && queue.length > 0) workers.push(worker());
          } catch (e) {
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
      if (failure instanceof BackendError) throw new DownloadError(failure.message, "backend", failure);
      throw new DownloadError(failure instanceof Error ? failure.message : "back-to-source failed", "internal");
    }
  }

  /**
   * Retries a piece through a temporary origin outage (network errors, 408, 429, 5xx) with
   * growing pauses, about 15 s in all: a seed peer that gives up on the first 503 fails the
   * task for every peer waiting on it. Errors that are the origin's answer (4xx) end at once.
   */
  private async rideOutage<T>(fetch: () => Promise<T>, signal: AbortSignal | undefined, givenUp: () => boolean): Promise<T> {
    for (const pauseMs of [500, 1000, 2000, 4000, 8000, -1]) {
      try {
        return await fetch();
      } catch (e) {
        const be = e instanceof BackendError ? e : e instanceof DownloadError ? e.backend : undefined;
        if (pauseMs < 0 || !be?.temporary || signal?.aborted || givenUp()) throw e;
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    }
    throw new Error("unreachable");
  }

  private async streamToStore(task: TaskStore, req: DownloadRequest, route: OriginRoute, session: AnnouncePeerSession | undefined): Promise<void> {
    const expected = task.meta.digest ? parseDigest(task.meta.digest) : undefined;
    const digest = await streamFromOrigin({
      task,
      route,
      digestAlgorithm: expected?.algorithm,
      signal: req.signal,
      toBackendError: (e) => nativeToBackendError(route.url, e, req.signal),
      onPiece: (piece) => {
        session?.pieceBackToSourceFinished(toProtoPiece(piece.info, TrafficType.BACK_TO_SOURCE));
        return this.emitStreamedPiece(task, piece);
      },
    });
    if (digest !== undefined) this.streamedDigests.set(task.id, digest);
  }

  /** For origins without Range support: one GET, cut into pieces as the bytes arrive. */
  private async backToSourceStream(task: TaskStore, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>, session: AnnouncePeerSession | undefined): Promise<void> {
    const { contentLength, pieceLength } = task.meta;
    const res = await backend.get({ url: req.download.url, headers, signal: req.signal });
    let number = 0;
    let buf = allocPieceBuffer(Math.min(pieceLength, contentLength));
    let filled = 0;
    let createdAt = Date.now();
    const flush = async () => {
      if (!task.piece(number)) {
        const info = await task.writePiece(number, buf, createdAt, req.signal);
        session?.pieceBackToSourceFinished(toProtoPiece(info, TrafficType.BACK_TO_SOURCE));
        this.emitPiece(task, info);
      }
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
   * Whether this task's pieces can be fetched by the native core (plain http with Range), and
   * where from. The route's address is resolved and SSRF-checked by the backend now, once.
   */
  private async nativeOrigin(task: TaskStore, req: DownloadRequest, backend: Backend, headers: Record<string, string>): Promise<NativeOrigin | undefined> {
    const fetchPiece = backend.fetchPiece?.bind(backend);
    if (!backend.route || !fetchPiece) return undefined;
    let url = this.sourceUrls.get(task.id);
    if (url === undefined) {
      // A resumed task skipped the stat: learn where the content lives now (redirects).
      if (new URL(req.download.url).protocol !== "http:") return undefined;
      try {
        const st = await backend.stat({ url: req.download.url, headers, signal: req.signal });
        if (!st.rangeSupported) return undefined;
        url = st.url;
      } catch {
        return undefined; // the JS path reports the failure with its own retries
      }
    }
    const route = await backend.route(url, req.download.url, headers, req.signal);
    if (!route) return undefined;
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
    return { route, fetch: (n, signal) => fetchPiece(route, store, n, signal) };
  }

  private async pieceFromOrigin(native: NativeOrigin, n: number, signal: AbortSignal | undefined): Promise<PieceInfo> {
    const p = await native.fetch(n, signal);
    return { number: p.number, offset: p.offset, length: p.length, digest: p.digest, parentId: p.parentId, createdAt: p.createdAtMs, finishedAt: p.finishedAtMs };
  }

  private async pieceFromSource(task: TaskStore, n: number, req: DownloadRequest, backend: ReturnType<BackendRegistry["for"]>, headers: Record<string, string>): Promise<PieceInfo> {
    const { offset, length } = pieceRange(n, task.meta.contentLength, task.meta.pieceLength);
    const createdAt = Date.now();
    const res = await backend.get({ url: req.download.url, headers, signal: req.signal, range: { start: offset, length } });
    // Block-aligned memory lets the store write it with O_DIRECT without another copy.
    const buf = allocPieceBuffer(length);
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
    return task.writePiece(n, buf, createdAt, req.signal);
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
    return new Promise((resolve) => {
      s.client.statTask({ hostId: this.opts.hostId, taskId }, new Metadata(), { deadline: Date.now() + 5000 }, (err, task) => {
        // Any state will do: the first peer registered the length it learned from the origin,
        // and the pieces can still come from the peers downloading it now.
        resolve(!err && task && task.contentLength > 0 ? task.contentLength : undefined);
      });
    });
  }
}
