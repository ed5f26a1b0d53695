// scheduler.v2.Scheduler for standard tasks: hosts, peers, tasks, AnnouncePeer, preheat and
// stat of files and images. RPCs this scheduler does not serve (cache, persistent and
// persistent-cache tasks) are left out of the implementation, so grpc-js answers UNIMPLEMENTED.
import { status, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { PREHEAT_FAILED } from "../common/grpc/preheat-failed.js";
import type { ImageResolver } from "../common/oci/resolver.js";
import type { Host as HostMessage, Peer as PeerMessage, Task as TaskMessage } from "../gen/common/v2/common.js";
import type { Empty } from "../gen/google/protobuf/empty.js";
import type {
  AnnounceHostRequest,
  AnnouncePeerRequest,
  AnnouncePeerResponse,
  DeleteHostRequest,
  DeletePeerRequest,
  DeleteTaskRequest,
  ListHostsRequest,
  ListHostsResponse,
  PreheatFileRequest,
  PreheatImageRequest,
  StatFileRequest,
  StatFileResponse,
  StatImageRequest,
  StatImageResponse,
  StatPeerRequest,
  StatTaskRequest,
  SchedulerServer,
} from "../gen/scheduler/v2/scheduler.js";
import { AnnouncePeerSession, type AnnounceContext } from "./announce-peer.js";
import { durationToMs } from "../common/grpc/duration.js";
import { hostMessage, peerMessage, taskMessage } from "./convert.js";
import type { SchedulerMetrics } from "./metrics.js";
import { fileTaskId, Preheat } from "./preheat.js";
import { HOST_TYPE_NORMAL } from "./resource/host.js";
import type { Resource } from "./resource/resource.js";
import type { Scheduling } from "./scheduling/scheduling.js";
import type { SeedPeers } from "./seed-peers.js";
import { allow, callerAddress, checkHost, checkIds, checkString, checkUrl, LIMITS, RequestError } from "./validate.js";
import { errorMessage } from "../common/errors.js";
import type { Authorizer, CallerCall } from "../common/grpc/authz.js";
import type { Role } from "../common/tls/identity.js";

export interface SchedulerServiceDeps {
  resource: Resource;
  scheduling: Scheduling;
  seedPeers: SeedPeers | undefined;
  metrics: SchedulerMetrics;
  log: Logger;
  backToSourceCount: number;
  /** ms between parent top-ups of a downloading peer; 0 (or absent) disables them. */
  parentRefreshInterval?: number;
  /** metrics.enableHost: per-host traffic series. */
  hostMetrics: boolean;
  /** Registry manifest resolution for PreheatImage / StatImage (SSRF-checked). */
  images: ImageResolver;
  /**
   * Who may announce a seed peer or delete a host, and which host a caller may act as (its
   * certificate's names); open when absent or plaintext.
   */
  authz?: Authorizer;
}

type Unary<Req, Res> = (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void;

/** Wraps a handler so thrown RequestErrors become statuses and anything else INTERNAL. */
function unary<Req, Res>(log: Logger, name: string, onFailure: () => void, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>): Unary<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (res) => callback(null, res),
        (e: unknown) => {
          onFailure();
          if (e instanceof RequestError) {
            callback({ code: e.code, details: e.message });
          } else {
            log.error({ err: e, rpc: name }, "internal error");
            callback({ code: status.INTERNAL, details: `${name}: ${errorMessage(e)}` });
          }
        },
      );
  };
}

type Implemented = Pick<
  SchedulerServer,
  "announcePeer" | "statPeer" | "deletePeer" | "statTask" | "deleteTask" | "announceHost" | "listHosts" | "deleteHost" | "preheatFile" | "statFile" | "preheatImage" | "statImage"
>;

export class SchedulerService {
  readonly preheat: Preheat;

  constructor(private readonly deps: SchedulerServiceDeps) {
    this.preheat = new Preheat(deps.resource, deps.seedPeers, deps.images, deps.log);
  }

  private hostLabels(h: HostMessage) {
    return {
      os: h.os,
      platform: h.platform,
      platform_family: h.platformFamily,
      platform_version: h.platformVersion,
      kernel_version: h.kernelVersion,
      git_version: h.build?.gitVersion ?? "",
      git_commit: h.build?.gitCommit ?? "",
      go_version: h.build?.goVersion ?? "",
      build_platform: h.build?.platform ?? "",
    };
  }

  /** Throws PERMISSION_DENIED unless the caller's certificate has one of `roles` (mTLS only). */
  private authorize(call: CallerCall, what: string, roles: readonly Role[]): void {
    allow(this.deps.authz?.check(call, what, roles));
  }

  /**
   * Throws PERMISSION_DENIED unless the caller's certificate names `host` (mTLS only). A host
   * entered the scheduler under a name its announcer's certificate carries (AnnounceHost checks
   * it), so this binds the host id to the certificates of that name: nobody else re-announces,
   * deletes or downloads as it.
   */
  private authorizeHost(call: CallerCall, what: string, hostname: string): void {
    allow(this.deps.authz?.checkHostName(call, what, hostname));
  }

  /** The grpc-js implementation object (typed for the methods we serve). */
  implementation(): Implemented & UntypedServiceImplementation {
    const { resource, metrics, log, seedPeers } = this.deps;
    const ctx: AnnounceContext = { ...this.deps };
    const none = () => undefined;
    const impl: Implemented = {
      announcePeer: (call: ServerDuplexStream<AnnouncePeerRequest, AnnouncePeerResponse>) => {
        new AnnouncePeerSession(ctx, call);
      },

      announceHost: unary<AnnounceHostRequest, Empty>(log, "AnnounceHost", none, (req, call) => {
        const caller = callerAddress(call.getPeer());
        try {
          const host = checkHost(req.host, caller);
          // A seed peer is handed every new task first and becomes everyone's parent: only a
          // host holding a seed-peer certificate may be one. A host refused here is not kept as
          // a normal peer either: its operator sees the refusal instead of a seed that never
          // gets a task.
          if (host.type !== HOST_TYPE_NORMAL) this.authorize(call, "AnnounceHost as a seed peer", ["seed-peer"]);
          const interval = req.interval ? durationToMs(req.interval) : undefined;
          if (interval !== undefined && !(interval > 0)) throw new RequestError(status.INVALID_ARGUMENT, "interval must be positive");
          // The host is who the caller's certificate says it is (the manager keys tenant access
          // on the names schedulers list), and a host id taken keeps its announcer's name.
          this.authorizeHost(call, "AnnounceHost", host.hostname);
          const existing = resource.hosts.get(host.id);
          if (existing && existing.hostname !== host.hostname) this.authorizeHost(call, "AnnounceHost over another host's id", existing.hostname);
          const wasSeed = existing?.isSeed ?? false;
          // Nor may a peer's certificate take over a seed's host id and turn it into a normal host.
          if (wasSeed) this.authorize(call, "AnnounceHost over a seed peer's host", ["seed-peer"]);
          const h = resource.announceHost(host, interval);
          metrics.announceHost.inc(this.hostLabels(host));
          if (h.isSeed) seedPeers?.announced(h);
          else if (wasSeed) seedPeers?.sync();
          return {};
        } catch (e) {
          if (req.host) metrics.announceHostFailure.inc(this.hostLabels(req.host));
          throw e;
        }
      }),

      listHosts: unary<ListHostsRequest, ListHostsResponse>(log, "ListHosts", () => metrics.listHostsFailure.inc(), (req) => {
        metrics.listHosts.inc();
        const hosts = [...resource.hosts.values()].filter((h) => req.type === undefined || h.type === req.type).map(hostMessage);
        return { hosts };
      }),

      deleteHost: unary<DeleteHostRequest, Empty>(log, "DeleteHost", () => metrics.leaveHostFailure.inc(), (req, call) => {
        metrics.leaveHost.inc();
        // Daemons delete their own host when they stop; nobody else has a reason to.
        this.authorize(call, "DeleteHost", ["seed-peer", "peer"]);
        checkIds({ hostId: req.hostId });
        const host = resource.hosts.get(req.hostId);
        if (!host) throw new RequestError(status.NOT_FOUND, `host ${req.hostId} not found`);
        this.authorizeHost(call, "DeleteHost", host.hostname);
        // A peer's certificate must not take seed peers off the ring.
        if (host.isSeed) this.authorize(call, "DeleteHost of a seed peer", ["seed-peer"]);
        resource.deleteHost(host);
        if (host.isSeed) seedPeers?.sync();
        return {};
      }),

      statPeer: unary<StatPeerRequest, PeerMessage>(log, "StatPeer", () => metrics.statPeerFailure.inc(), (req) => {
        metrics.statPeer.inc();
        checkIds({ peerId: req.peerId });
        const peer = resource.peers.get(req.peerId);
        if (!peer) throw new RequestError(status.NOT_FOUND, `peer ${req.peerId} not found`);
        const msg = peerMessage(peer, resource.now());
        msg.pieces = [...peer.finishedPieces].sort((a, b) => a - b).map((n) => ({ number: n, offset: peer.task.pieceLength * n, length: 0, digest: "" }));
        return msg;
      }),

      deletePeer: unary<DeletePeerRequest, Empty>(log, "DeletePeer", () => metrics.leavePeerFailure.inc(), (req, call) => {
        metrics.leavePeer.inc();
        checkIds({ peerId: req.peerId });
        // Idempotent, as in Dragonfly: deleting a peer that is gone is not an error.
        const peer = resource.peers.get(req.peerId);
        if (peer) this.authorizeHost(call, "DeletePeer", peer.host.hostname);
        if (peer) resource.deletePeer(peer);
        return {};
      }),

      statTask: unary<StatTaskRequest, TaskMessage>(log, "StatTask", () => metrics.statTaskFailure.inc(), (req) => {
        metrics.statTask.inc();
        checkIds({ taskId: req.taskId });
        const task = resource.tasks.get(req.taskId);
        if (!task) throw new RequestError(status.NOT_FOUND, `task ${req.taskId} not found`);
        return taskMessage(task);
      }),

      deleteTask: unary<DeleteTaskRequest, Empty>(log, "DeleteTask", () => metrics.leaveTaskFailure.inc(), (req, call) => {
        metrics.leaveTask.inc();
        checkIds({ hostId: req.hostId, taskId: req.taskId });
        const host = resource.hosts.get(req.hostId);
        if (!host) throw new RequestError(status.NOT_FOUND, `host ${req.hostId} not found`);
        this.authorizeHost(call, "DeleteTask", host.hostname);
        // The host dropped its copy: its peers of that task leave.
        for (const peer of [...host.peers.values()]) if (peer.task.id === req.taskId) resource.deletePeer(peer);
        return {};
      }),

      preheatFile: unary<PreheatFileRequest, Empty>(log, "PreheatFile", () => metrics.preheatFileFailure.inc(), (req) => {
        metrics.preheatFile.inc();
        this.preheat.preheatFile(req);
        return {};
      }),

      statFile: unary<StatFileRequest, StatFileResponse>(log, "StatFile", () => metrics.statFileFailure.inc(), (req) => {
        metrics.statFile.inc();
        checkUrl("url", req.url);
        checkString("tag", req.tag, LIMITS.string);
        checkString("application", req.application, LIMITS.string);
        const taskId = fileTaskId(req);
        const copies = this.preheat.cachedCopies(taskId);
        // No peer holds the file and the preheat that was to fetch it failed everywhere: it
        // will not appear, and the manager polling for it learns why (PREHEAT_FAILED).
        const failure = copies.some((c) => c.isFinished) ? undefined : this.preheat.failure(taskId);
        if (failure) throw new RequestError(PREHEAT_FAILED, failure);
        return { peers: copies.map((c) => ({ ip: c.ip, hostname: c.hostname, cachedFiles: [{ url: req.url, isFinished: c.isFinished }] })) };
      }),

      // The scheduler resolves the manifest itself (the shared OCI resolver) and preheats each
      // blob as a file; the RPC returns once the blobs are dispatched, as Dragonfly's does.
      preheatImage: unary<PreheatImageRequest, Empty>(log, "PreheatImage", () => metrics.preheatImageFailure.inc(), async (req) => {
        metrics.preheatImage.inc();
        await this.preheat.preheatImage(req);
        return {};
      }),
      statImage: unary<StatImageRequest, StatImageResponse>(log, "StatImage", () => metrics.statImageFailure.inc(), (req) => {
        metrics.statImage.inc();
        return this.preheat.statImage(req);
      }),
    };
    return impl;
  }
}
