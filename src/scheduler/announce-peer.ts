// One AnnouncePeer stream: requests are handled strictly in arrival order (a scheduling round
// that waits between retries holds back the next request, as in Dragonfly's Go loop), the
// stream ends OK after a finished/failed report, and any request error ends it with a status.
import { status, type ServerDuplexStream } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { Priority, SizeScope, TrafficType, type Download } from "../gen/common/v2/common.js";
import type { AnnouncePeerRequest, AnnouncePeerResponse } from "../gen/scheduler/v2/scheduler.js";
import { durationToMs } from "../common/grpc/duration.js";
import { peerMessage } from "./convert.js";
import { armOf, AbEvaluator } from "./scheduling/evaluator/ab.js";
import type { SchedulerMetrics } from "./metrics.js";
import { taskSizeLevel } from "./metrics.js";
import { FsmError } from "./resource/fsm.js";
import { PeerEvent, PeerState, type Peer } from "./resource/peer.js";
import type { Resource } from "./resource/resource.js";
import { TaskEvent, TaskState } from "./resource/task.js";
import { SchedulingError, type Scheduling } from "./scheduling/scheduling.js";
import type { SeedPeers } from "./seed-peers.js";
import { allow, checkDownload, checkIds, checkPiece, checkString, LIMITS, RequestError } from "./validate.js";
import { errorMessage } from "../common/errors.js";
import type { Authorizer } from "../common/grpc/authz.js";
import { inSpan } from "../common/tracing.js";

export interface AnnounceContext {
  resource: Resource;
  scheduling: Scheduling;
  seedPeers: SeedPeers | undefined;
  metrics: SchedulerMetrics;
  log: Logger;
  backToSourceCount: number;
  hostMetrics: boolean;
  /** ms between parent top-ups while the peer downloads from parents; 0/absent disables. */
  parentRefreshInterval?: number | undefined;
  /** Which host a caller may download as (its certificate's names); open when absent or plaintext. */
  authz?: Authorizer | undefined;
}

type Request = NonNullable<AnnouncePeerRequest["request"]>;
type Outcome = "continue" | "end";

const PRIORITY_NAMES = ["LEVEL0", "LEVEL1", "LEVEL2", "LEVEL3", "LEVEL4", "LEVEL5", "LEVEL6"];
const TASK_TYPE_NAMES = ["STANDARD", "PERSISTENT", "PERSISTENT_CACHE", "CACHE"];
const TRAFFIC_NAMES = ["BACK_TO_SOURCE", "REMOTE_PEER", "LOCAL_PEER"];

function peerLabels(peer: Peer) {
  return { priority: PRIORITY_NAMES[peer.priority] ?? "LEVEL0", task_type: TASK_TYPE_NAMES[peer.task.type] ?? "STANDARD", host_type: peer.host.typeName };
}

function fsmToStatus(e: unknown): unknown {
  return e instanceof FsmError ? new RequestError(status.FAILED_PRECONDITION, e.message) : e;
}

export class AnnouncePeerSession {
  private peer: Peer | undefined;
  private closed = false;
  private queue: Promise<void> = Promise.resolve();
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshQueued = false;

  constructor(
    private readonly ctx: AnnounceContext,
    private readonly call: ServerDuplexStream<AnnouncePeerRequest, AnnouncePeerResponse>,
  ) {
    ctx.metrics.announcePeer.inc();
    call.on("data", (req: AnnouncePeerRequest) => {
      this.queue = this.queue.then(() => this.dispatch(req));
    });
    call.on("end", () => {
      this.queue = this.queue.then(() => this.finish());
    });
    call.on("cancelled", () => this.detach());
    call.on("error", () => this.detach());
  }

  private get alive(): boolean {
    return !this.closed && !this.call.cancelled;
  }

  private send(response: AnnouncePeerResponse): void {
    if (this.alive) this.call.write(response);
  }

  private detach(): void {
    this.closed = true;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = undefined;
    if (this.peer && this.peer.stream?.send === this.sendRef) this.peer.stream = undefined;
  }

  private readonly sendRef = (r: AnnouncePeerResponse) => this.send(r);

  /** Client half-closed: end our half too (Dragonfly returns nil on EOF). */
  private finish(): void {
    if (this.closed) return;
    this.detach();
    this.call.end();
  }

  private fail(err: unknown): void {
    if (this.closed) return;
    this.ctx.metrics.announcePeerFailure.inc();
    const e = fsmToStatus(err);
    const code = e instanceof RequestError || e instanceof SchedulingError ? e.code : status.INTERNAL;
    const details = errorMessage(e);
    if (code === status.INTERNAL) this.ctx.log.error({ err: e }, "AnnouncePeer failed");
    else this.ctx.log.info({ code, details, peerId: this.peer?.id }, "AnnouncePeer rejected");
    this.detach();
    this.call.emit("error", { code, details });
  }

  private async dispatch(req: AnnouncePeerRequest): Promise<void> {
    if (this.closed) return;
    try {
      const outcome = await this.handle(req);
      if (outcome === "end" && !this.closed) {
        this.detach();
        this.call.end();
      }
    } catch (e) {
      this.fail(e);
    }
  }

  private async handle(req: AnnouncePeerRequest): Promise<Outcome> {
    checkIds({ hostId: req.hostId, taskId: req.taskId, peerId: req.peerId });
    // A host's peers are registered and reported by that host alone (its certificate names the
    // host announced under the id), so no other certificate downloads as it or speaks for it.
    const host = this.ctx.resource.hosts.get(req.hostId);
    if (host) allow(this.ctx.authz?.checkHostName(this.call, "AnnouncePeer", host.hostname));
    const r = req.request;
    if (!r) throw new RequestError(status.INVALID_ARGUMENT, "AnnouncePeerRequest.request is required (no request variant set)");
    if (r.$case === "registerPeerRequest") {
      const download = r.registerPeerRequest.download;
      return inSpan("RegisterPeer", { "dragonfly.task.id": req.taskId, "dragonfly.peer.id": req.peerId }, () => this.register(req, checkDownload(download)));
    }
    const peer = this.ctx.resource.peers.get(req.peerId);
    if (!peer) throw new RequestError(status.NOT_FOUND, `peer ${req.peerId} not found`);
    if (peer.task.id !== req.taskId || peer.host.id !== req.hostId) {
      throw new RequestError(status.INVALID_ARGUMENT, `peer ${req.peerId} belongs to task ${peer.task.id} on host ${peer.host.id}, not task ${req.taskId} on host ${req.hostId}`);
    }
    return this.progress(peer, r);
  }

  // --- register ---------------------------------------------------------------------------

  private async register(req: AnnouncePeerRequest, download: Download): Promise<Outcome> {
    const { resource, metrics } = this.ctx;
    if (this.peer) throw new RequestError(status.FAILED_PRECONDITION, `this stream already registered peer ${this.peer.id}`);
    const host = resource.hosts.get(req.hostId);
    if (!host) throw new RequestError(status.NOT_FOUND, `host ${req.hostId} not found`);
    const existingPeer = resource.peers.get(req.peerId);
    if (existingPeer && (existingPeer.task.id !== req.taskId || existingPeer.host.id !== req.hostId)) {
      throw new RequestError(status.INVALID_ARGUMENT, `peer ${req.peerId} is already registered for task ${existingPeer.task.id} on host ${existingPeer.host.id}`);
    }

    const contentLength = download.actualContentLength ?? -1;
    const pieceLength = download.actualPieceLength ?? download.pieceLength ?? 0;
    const pieceCount = download.actualPieceCount ?? (contentLength >= 0 && pieceLength > 0 ? Math.ceil(contentLength / pieceLength) : contentLength === 0 ? 0 : -1);
    const { task } = resource.loadOrCreateTask({
      id: req.taskId,
      type: download.type,
      url: download.url,
      digest: download.digest,
      tag: download.tag,
      application: download.application,
      filteredQueryParams: download.filteredQueryParams,
      requestHeader: download.requestHeader,
      contentLength,
      pieceLength,
      totalPieceCount: pieceCount,
      backToSourceLimit: this.ctx.backToSourceCount,
    });
    task.url = download.url;
    task.filteredQueryParams = download.filteredQueryParams;
    task.requestHeader = download.requestHeader;
    // A task first registered without a known layout adopts the first one reported.
    if (task.contentLength < 0 && contentLength >= 0) {
      task.contentLength = contentLength;
      task.pieceLength = pieceLength;
      task.totalPieceCount = pieceCount;
    }

    const { peer } = resource.loadOrCreatePeer({ id: req.peerId, priority: download.priority, range: download.range, concurrentPieceCount: download.concurrentPieceCount }, task, host);
    this.peer = peer;
    peer.stream = { send: this.sendRef };
    const labels = peerLabels(peer);
    metrics.registerPeer.inc(labels);
    try {
      return await this.registerPeer(peer, download);
    } catch (e) {
      metrics.registerPeerFailure.inc(labels);
      if (peer.fsm.can(PeerEvent.DownloadFailed)) peer.fsm.fire(PeerEvent.DownloadFailed);
      throw e;
    }
  }

  private async registerPeer(peer: Peer, download: Download): Promise<Outcome> {
    const { resource } = this.ctx;
    const task = peer.task;
    const host = peer.host;

    if (download.metadataOnly) {
      // The peer holds the content already and registers for bookkeeping only.
      if (!task.fsm.is(TaskState.Running)) task.fsm.fire(TaskEvent.Download);
      else task.updatedAt = resource.now();
      peer.fsm.fire(PeerEvent.RegisterNormal);
      this.send({ response: { $case: "metadataOnlyResponse", metadataOnlyResponse: {} } });
      return "continue";
    }

    const blocklist = new Set([peer.id]);
    if (download.needBackToSource) {
      peer.needBackToSource = true;
    } else if (task.fsm.is(TaskState.Pending, TaskState.Failed, TaskState.Leave) || (task.fsm.is(TaskState.Succeeded) && !task.hasAvailablePeer(host.id, blocklist))) {
      // First download of the task (or nobody can serve it any more).
      if (!host.isSeed && this.ctx.seedPeers?.hasAvailable()) this.downloadTaskBySeedPeer(peer, download);
      else peer.needBackToSource = true;
    }

    if (!task.fsm.is(TaskState.Running)) task.fsm.fire(TaskEvent.Download);
    else task.updatedAt = resource.now();

    const scope = task.sizeScope();
    if (scope === SizeScope.EMPTY) {
      peer.fsm.fire(PeerEvent.RegisterEmpty);
      this.send({ response: { $case: "emptyTaskResponse", emptyTaskResponse: {} } });
      return "continue";
    }
    // scheduler.v2 has no tiny/small responses: those sizes are scheduled like normal ones,
    // but the peer state records the size class.
    peer.fsm.fire(scope === SizeScope.TINY ? PeerEvent.RegisterTiny : scope === SizeScope.SMALL ? PeerEvent.RegisterSmall : PeerEvent.RegisterNormal);
    peer.blockParents.add(peer.id);
    await this.schedule(peer);
    return "continue";
  }

  /** Dragonfly's priority levels for the first download of a task. */
  private downloadTaskBySeedPeer(peer: Peer, download: Download): void {
    const task = peer.task;
    switch (peer.priority) {
      case Priority.LEVEL0:
      case Priority.LEVEL4:
      case Priority.LEVEL5:
      case Priority.LEVEL6:
        if (!task.seedPeerFailed && this.triggerSeed(peer, download)) return;
        peer.needBackToSource = true;
        return;
      case Priority.LEVEL3:
        peer.needBackToSource = true;
        return;
      case Priority.LEVEL2:
        throw new RequestError(status.NOT_FOUND, "LEVEL2 peer not found candidate peers");
      case Priority.LEVEL1:
        throw new RequestError(status.FAILED_PRECONDITION, "LEVEL1 peer is forbidden");
      default:
        throw new RequestError(status.INVALID_ARGUMENT, `invalid priority ${String(peer.priority)}`);
    }
  }

  private triggerSeed(peer: Peer, download: Download): boolean {
    const { seedPeers, metrics, log } = this.ctx;
    const task = peer.task;
    const started = seedPeers?.trigger(task.id, download);
    if (!started) return false;
    started.done.then(
      () => metrics.seedPeerTrigger.inc({ result: "success" }),
      (err: unknown) => {
        metrics.seedPeerTrigger.inc({ result: "failure" });
        task.seedPeerFailed = true;
        log.warn({ taskId: task.id, seed: started.host.id, err: errorMessage(err) }, "seed peer download failed");
      },
    );
    return true;
  }

  private async schedule(peer: Peer): Promise<void> {
    const { scheduling, metrics, resource } = this.ctx;
    const start = performance.now();
    metrics.concurrentSchedule.inc();
    try {
      const outcome = await scheduling.scheduleCandidateParents(peer, peer.blockParents, () => this.alive);
      if (outcome.kind === "back-to-source") {
        this.send({ response: { $case: "needBackToSourceResponse", needBackToSourceResponse: { description: outcome.description } } });
      } else {
        const now = resource.now();
        this.send({ response: { $case: "normalTaskResponse", normalTaskResponse: { candidateParents: outcome.parents.map((p) => peerMessage(p, now)) } } });
        this.startParentRefresh();
      }
      metrics.scheduleDuration.observe(performance.now() - start);
    } finally {
      metrics.concurrentSchedule.dec();
    }
  }

  // --- parent top-up while downloading ---------------------------------------------------

  /**
   * Peers that start together all register while only the seed qualifies as a parent, and
   * would otherwise keep the seed alone until their round fails. Every tick, a peer that is
   * downloading from parents and has room for more is offered the peers that started serving
   * since: another NormalTaskResponse on the same stream with the full list (existing parents
   * first). Dragonfly's Rust client treats any NormalTaskResponse as "download from these
   * parents" and simply opens SyncPieces to them as well, which is harmless; our daemon adds
   * them to its running round. The tick runs on the request queue, so it never interleaves
   * with a reschedule of the same peer.
   */
  private startParentRefresh(): void {
    const every = this.ctx.parentRefreshInterval ?? 0;
    if (every <= 0 || this.refreshTimer || this.closed) return;
    this.refreshTimer = setInterval(() => {
      if (this.refreshQueued || this.closed) return;
      this.refreshQueued = true;
      this.queue = this.queue.then(() => {
        this.refreshQueued = false;
        this.refreshParents();
      });
    }, every);
    this.refreshTimer.unref();
  }

  private refreshParents(): void {
    const peer = this.peer;
    if (!peer || !this.alive || peer.stream?.send !== this.sendRef || !peer.fsm.is(PeerState.Running)) return;
    try {
      const parents = this.ctx.scheduling.refreshCandidateParents(peer);
      if (!parents) return;
      const now = this.ctx.resource.now();
      this.send({ response: { $case: "normalTaskResponse", normalTaskResponse: { candidateParents: parents.map((p) => peerMessage(p, now)) } } });
    } catch (e) {
      // A top-up is an optimisation: a failure must not end the peer's stream.
      this.ctx.log.warn({ peerId: peer.id, err: errorMessage(e) }, "parent refresh failed");
    }
  }

  // --- progress ---------------------------------------------------------------------------

  private async progress(peer: Peer, r: Exclude<Request, { $case: "registerPeerRequest" }>): Promise<Outcome> {
    const { resource, metrics } = this.ctx;
    const now = resource.now();
    const labels = peerLabels(peer);
    switch (r.$case) {
      case "downloadPeerStartedRequest":
        metrics.downloadPeerStarted.inc(labels);
        try {
          if (!peer.fsm.is(PeerState.Running)) peer.fsm.fire(PeerEvent.Download);
        } catch (e) {
          metrics.downloadPeerStartedFailure.inc(labels);
          throw e;
        }
        peer.updatedAt = now;
        return "continue";

      case "downloadPeerBackToSourceStartedRequest":
        checkString("description", r.downloadPeerBackToSourceStartedRequest.description, LIMITS.description);
        metrics.downloadPeerBackToSourceStarted.inc(labels);
        try {
          if (!peer.fsm.is(PeerState.BackToSource)) peer.fsm.fire(PeerEvent.DownloadBackToSource);
        } catch (e) {
          metrics.downloadPeerBackToSourceStartedFailure.inc(labels);
          throw e;
        }
        peer.task.backToSourcePeers.add(peer.id);
        // Named so in its children's candidate lists (Peer.need_back_to_source, as Dragonfly
        // sets it for peers it sends to the origin): a receiver takes a piece whose origin
        // digest is not known yet only from a peer that fetched it from the origin itself.
        peer.needBackToSource = true;
        // Origin fetches do not use parents: release them.
        resource.deleteParents(peer);
        peer.updatedAt = now;
        return "continue";

      case "reschedulePeerRequest": {
        const req = r.reschedulePeerRequest;
        checkString("description", req.description, LIMITS.description);
        if (req.candidateParents.length > LIMITS.candidateParents) throw new RequestError(status.INVALID_ARGUMENT, `reschedule_peer_request has ${req.candidateParents.length} candidate parents, over the limit of ${LIMITS.candidateParents}`);
        for (const p of req.candidateParents) {
          checkString("candidate_parents.id", p.id, LIMITS.id, true);
          peer.blockParents.add(p.id);
        }
        peer.updatedAt = now;
        await this.schedule(peer);
        return "continue";
      }

      case "downloadPeerFinishedRequest":
        this.succeed(peer, false);
        return "end";

      case "downloadPeerBackToSourceFinishedRequest":
        this.succeed(peer, true);
        return "end";

      case "downloadPeerFailedRequest":
        checkString("description", r.downloadPeerFailedRequest.description, LIMITS.description);
        metrics.downloadPeer.inc(labels);
        metrics.downloadPeerFailure.inc(labels);
        peer.fsm.fire(PeerEvent.DownloadFailed);
        peer.task.backToSourcePeers.delete(peer.id);
        resource.deleteParents(peer);
        peer.updatedAt = now;
        return "end";

      case "downloadPeerBackToSourceFailedRequest": {
        checkString("description", r.downloadPeerBackToSourceFailedRequest.description, LIMITS.description);
        metrics.downloadPeer.inc(labels);
        metrics.downloadPeerBackToSourceFailure.inc(labels);
        peer.fsm.fire(PeerEvent.DownloadFailed);
        peer.task.backToSourcePeers.delete(peer.id);
        resource.deleteParents(peer);
        // The origin could not deliver: forget what we believed about the content.
        const task = peer.task;
        if (task.fsm.can(TaskEvent.DownloadFailed)) task.fsm.fire(TaskEvent.DownloadFailed);
        task.contentLength = -1;
        task.totalPieceCount = -1;
        task.pieces.clear();
        peer.updatedAt = now;
        return "end";
      }

      case "downloadPieceFinishedRequest":
      case "downloadPieceBackToSourceFinishedRequest": {
        const backToSource = r.$case === "downloadPieceBackToSourceFinishedRequest";
        const piece = checkPiece(r.$case, backToSource ? r.downloadPieceBackToSourceFinishedRequest.piece : r.downloadPieceFinishedRequest.piece);
        this.checkPieceLayout(peer, piece.number, piece.offset, piece.length);
        const costMs = durationToMs(piece.cost);
        peer.finishedPieces.add(piece.number);
        peer.pieceCosts.add(costMs);
        peer.pieceUpdatedAt = now;
        peer.updatedAt = now;
        peer.task.updatedAt = now;
        const traffic = piece.trafficType ?? (backToSource ? TrafficType.BACK_TO_SOURCE : TrafficType.REMOTE_PEER);
        const trafficName = TRAFFIC_NAMES[traffic] ?? "REMOTE_PEER";
        metrics.downloadPiece.inc({ traffic_type: trafficName, task_type: labels.task_type, host_type: labels.host_type });
        metrics.traffic.inc({ type: trafficName, task_type: labels.task_type, host_type: labels.host_type }, piece.length);
        if (this.ctx.hostMetrics) {
          const h = peer.host;
          metrics.hostTraffic.inc({ type: "download", task_type: labels.task_type, host_type: labels.host_type, host_id: h.id, host_ip: h.ip, host_name: h.hostname }, piece.length);
          const parentHost = piece.parentId ? resource.peers.get(piece.parentId)?.host : undefined;
          if (parentHost) metrics.hostTraffic.inc({ type: "upload", task_type: labels.task_type, host_type: parentHost.typeName, host_id: parentHost.id, host_ip: parentHost.ip, host_name: parentHost.hostname }, piece.length);
        }
        if (backToSource) {
          const vouched = peer.task.pieces.vouch(piece, peer.task.totalPieceCount);
          if (vouched === "conflict") {
            metrics.pieceDigestConflict.inc({ task_type: labels.task_type, host_type: labels.host_type });
            this.ctx.log.warn({ taskId: peer.task.id, peerId: peer.id, piece: piece.number, reported: piece.digest, kept: peer.task.pieces.get(piece.number)?.digest }, "back-to-source piece digest differs from the first report; keeping the first");
          }
        } else if (piece.parentId) {
          const parent = resource.peers.get(piece.parentId);
          if (parent) {
            parent.updatedAt = now;
            parent.host.recordUpload(piece.length, costMs / 1000, now);
          }
        }
        return "continue";
      }

      case "downloadPieceFailedRequest": {
        const req = r.downloadPieceFailedRequest;
        checkString("download_piece_failed_request.parent_id", req.parentId, LIMITS.id, true);
        if (req.pieceNumber !== undefined) this.checkPieceNumber(peer, req.pieceNumber);
        const pieceLabels = { traffic_type: "REMOTE_PEER", task_type: labels.task_type, host_type: labels.host_type };
        metrics.downloadPiece.inc(pieceLabels);
        metrics.downloadPieceFailure.inc(pieceLabels);
        if (req.temporary) {
          // The parent may recover, but not for this peer: never offer it again here.
          peer.blockParents.add(req.parentId);
          const parent = resource.peers.get(req.parentId);
          if (parent) parent.host.uploadFailedCount++;
          peer.updatedAt = now;
          peer.task.updatedAt = now;
        } else {
          this.ctx.log.warn({ peerId: peer.id, parentId: req.parentId, piece: req.pieceNumber }, "download piece failed permanently");
        }
        return "continue";
      }

      case "downloadPieceBackToSourceFailedRequest": {
        const req = r.downloadPieceBackToSourceFailedRequest;
        if (!req.response) throw new RequestError(status.INVALID_ARGUMENT, "download_piece_back_to_source_failed_request.response is required");
        if (req.pieceNumber !== undefined) this.checkPieceNumber(peer, req.pieceNumber);
        const pieceLabels = { traffic_type: "BACK_TO_SOURCE", task_type: labels.task_type, host_type: labels.host_type };
        metrics.downloadPiece.inc(pieceLabels);
        metrics.downloadPieceFailure.inc(pieceLabels);
        metrics.downloadPieceBackToSourceFailure.inc(pieceLabels);
        peer.updatedAt = now;
        peer.task.updatedAt = now;
        const detail = req.response.$case === "backend" ? req.response.backend.message : (req.response.unknown.message ?? "");
        this.ctx.log.warn({ peerId: peer.id, piece: req.pieceNumber, detail: detail.slice(0, 500) }, "download piece from source failed");
        return "continue";
      }
    }
  }

  private succeed(peer: Peer, backToSource: boolean): void {
    const { resource, metrics, scheduling } = this.ctx;
    const now = resource.now();
    const labels = peerLabels(peer);
    peer.cost = now - peer.createdAt;
    try {
      peer.fsm.fire(PeerEvent.DownloadSucceeded);
    } catch (e) {
      metrics.downloadPeerFailure.inc(labels);
      throw e;
    }
    peer.updatedAt = now;
    resource.deleteParents(peer);
    const task = peer.task;
    if (backToSource) {
      task.backToSourcePeers.delete(peer.id);
      if (!peer.range && !task.fsm.is(TaskState.Succeeded) && task.fsm.can(TaskEvent.DownloadSucceeded)) task.fsm.fire(TaskEvent.DownloadSucceeded);
    }
    metrics.downloadPeer.inc(labels);
    const level = taskSizeLevel(task.contentLength);
    metrics.downloadPeerDuration.observe({ task_size_level: level }, peer.cost);
    const evaluator = scheduling.evaluator;
    if (evaluator instanceof AbEvaluator && !peer.host.isSeed) {
      const arm = armOf(peer.host.id);
      metrics.abDownloadPeerDuration.observe({ arm, evaluator: (arm === "a" ? evaluator.a : evaluator.b).name, task_size_level: level }, peer.cost);
    }
  }

  private checkPieceNumber(peer: Peer, number: number): void {
    const total = peer.task.totalPieceCount;
    if (total >= 0 && number >= total) throw new RequestError(status.INVALID_ARGUMENT, `piece number ${number} is out of range: task ${peer.task.id} has ${total} pieces`);
  }

  private checkPieceLayout(peer: Peer, number: number, offset: number, length: number): void {
    this.checkPieceNumber(peer, number);
    const t = peer.task;
    if (t.pieceLength > 0 && offset !== number * t.pieceLength) throw new RequestError(status.INVALID_ARGUMENT, `piece ${number} offset ${offset} does not match piece length ${t.pieceLength}`);
    if (t.pieceLength > 0 && length > t.pieceLength) throw new RequestError(status.INVALID_ARGUMENT, `piece ${number} length ${length} exceeds piece length ${t.pieceLength}`);
    if (t.contentLength >= 0 && offset + length > t.contentLength) throw new RequestError(status.INVALID_ARGUMENT, `piece ${number} ends at ${offset + length}, beyond the content length ${t.contentLength}`);
  }
}

