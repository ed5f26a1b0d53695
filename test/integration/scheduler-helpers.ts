// Shared helpers for the scheduler integration tests: a scheduler on 127.0.0.1:0, generated
// clients, an AnnouncePeer stream wrapper that turns responses and the final status into
// promises, message builders, and a fake seed peer (DfdaemonUpload) that behaves like
// Dragonfly's: it registers itself through AnnouncePeer and reports back-to-source pieces.
import { credentials, Metadata, status, type CallOptions, type ClientDuplexStream, type ServerWritableStream, type ServiceError, type StatusObject } from "@grpc/grpc-js";
import { startGrpcServer, type GrpcServerHandle } from "../../src/common/grpc/server.js";
import { silentLogger } from "../../src/common/logger.js";
import { createRegistry } from "../../src/common/metrics.js";
import { Download, Host, Priority, TrafficType, type Piece } from "../../src/gen/common/v2/common.js";
import { DfdaemonUploadService, type DownloadTaskRequest, type DownloadTaskResponse } from "../../src/gen/dfdaemon/v2/dfdaemon.js";
import { SchedulerClient, type AnnouncePeerRequest, type AnnouncePeerResponse } from "../../src/gen/scheduler/v2/scheduler.js";
import { startScheduler, type SchedulerHandle } from "../../src/scheduler/server.js";

export const MiB = 1024 * 1024;

export async function startTestScheduler(overrides: Record<string, unknown> = {}): Promise<{ handle: SchedulerHandle; client: InstanceType<typeof SchedulerClient> }> {
  const base: Record<string, unknown> = {
    server: { listenIP: "127.0.0.1", port: 0 },
    metrics: { addr: "127.0.0.1:0" },
    seedPeer: { enable: true, healthCheckInterval: "0s" },
  };
  const cfg = deepMerge(base, overrides);
  const handle = await startScheduler(cfg, { logger: silentLogger(), registry: createRegistry(false) });
  const client = new SchedulerClient(`127.0.0.1:${handle.grpcPort}`, credentials.createInsecure());
  return { handle, client };
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const av = out[k];
    out[k] = av && typeof av === "object" && v && typeof v === "object" && !Array.isArray(v) ? deepMerge(av as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/** Calls a bound generated unary method (its last overload: request, metadata, options, callback). */
export function unaryCall<Req, Res>(fn: (req: Req, metadata: Metadata, options: Partial<CallOptions>, cb: (err: ServiceError | null, res: Res) => void) => unknown, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, new Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** The status code a gRPC call ends with: OK, or its error's code. */
export async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return status.OK;
  } catch (e) {
    return (e as ServiceError).code;
  }
}

/** A host message; its hostname is made from the id unless given (under mTLS: a name of the caller's certificate). */
export function hostMsg(id: string, opts: { type?: number; ip?: string; port?: number; maxTx?: number; tx?: number; idc?: string; hostname?: string } = {}): Host {
  return Host.fromPartial({
    id,
    type: opts.type ?? 0,
    hostname: opts.hostname ?? (id.replace(/[^a-z0-9-]/gi, "-").slice(0, 60) || "h"),
    ip: opts.ip ?? "127.0.0.1",
    port: opts.port ?? 4000,
    downloadPort: opts.port ?? 4000,
    os: "linux",
    platform: "linux",
    network: { maxTxBandwidth: opts.maxTx ?? 1e9, txBandwidth: opts.tx ?? 0, maxRxBandwidth: 1e9, idc: opts.idc, location: "" },
  });
}

export async function announceHost(client: InstanceType<typeof SchedulerClient>, host: Host, intervalSeconds = 300): Promise<void> {
  await unaryCall(client.announceHost.bind(client), { host, interval: { seconds: intervalSeconds, nanos: 0 } });
}

export function download(url: string, contentLength: number | undefined, opts: { pieceLength?: number; priority?: Priority; metadataOnly?: boolean; needBackToSource?: boolean; pieceCount?: number } = {}): Download {
  const pieceLength = opts.pieceLength ?? 4 * MiB;
  return Download.fromPartial({
    url,
    priority: opts.priority ?? Priority.LEVEL0,
    actualContentLength: contentLength,
    actualPieceLength: contentLength === undefined ? undefined : pieceLength,
    actualPieceCount: contentLength === undefined ? undefined : (opts.pieceCount ?? Math.ceil(contentLength / pieceLength)),
    metadataOnly: opts.metadataOnly ?? false,
    needBackToSource: opts.needBackToSource ?? false,
  });
}

export function piece(number: number, pieceLength: number, length: number, parentId?: string): Piece {
  return {
    number,
    parentId,
    offset: number * pieceLength,
    length,
    digest: "crc32:907060870",
    trafficType: parentId ? TrafficType.REMOTE_PEER : TrafficType.BACK_TO_SOURCE,
    cost: { seconds: 0, nanos: 20_000_000 },
    createdAt: new Date(),
  };
}

/** One AnnouncePeer stream with awaitable responses and final status. */
export class Announce {
  readonly call: ClientDuplexStream<AnnouncePeerRequest, AnnouncePeerResponse>;
  private readonly responses: AnnouncePeerResponse[] = [];
  private waiters: Array<() => void> = [];
  private final: StatusObject | undefined;
  readonly status: Promise<StatusObject>;

  constructor(
    client: InstanceType<typeof SchedulerClient>,
    readonly hostId: string,
    readonly taskId: string,
    readonly peerId: string,
  ) {
    this.call = client.announcePeer();
    this.call.on("data", (r: AnnouncePeerResponse) => {
      this.responses.push(r);
      this.wake();
    });
    this.call.on("error", () => undefined);
    this.status = new Promise((resolve) => {
      this.call.on("status", (s: StatusObject) => {
        this.final = s;
        this.wake();
        resolve(s);
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(request: AnnouncePeerRequest["request"]): void {
    this.call.write({ hostId: this.hostId, taskId: this.taskId, peerId: this.peerId, request });
  }

  /** The next response; rejects if the stream ends first. */
  async next(): Promise<AnnouncePeerResponse> {
    for (;;) {
      const r = this.responses.shift();
      if (r) return r;
      if (this.final) throw new Error(`stream ended (code ${this.final.code}: ${this.final.details}) before a response`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  register(d: Download): void {
    this.send({ $case: "registerPeerRequest", registerPeerRequest: { download: d } });
  }
}

export interface FakeSeed {
  server: GrpcServerHandle;
  port: number;
  requests: DownloadTaskRequest[];
  close(): Promise<void>;
}

/**
 * A seed peer's DfdaemonUpload: on DownloadTask it registers a seed peer through AnnouncePeer
 * (need_back_to_source), reports every piece from the origin and finishes, streaming
 * Started + one PieceFinished per piece back to the scheduler, then ends OK.
 */
export async function startFakeSeed(schedulerPort: number, seedHostId: string): Promise<FakeSeed> {
  const requests: DownloadTaskRequest[] = [];
  const client = new SchedulerClient(`127.0.0.1:${schedulerPort}`, credentials.createInsecure());
  const server = await startGrpcServer(
    [
      {
        definition: DfdaemonUploadService,
        implementation: {
          downloadTask: (call: ServerWritableStream<DownloadTaskRequest, DownloadTaskResponse>) => {
            requests.push(call.request);
            const d = call.request.download;
            void (async () => {
              if (!d) return call.emit("error", { code: 3, details: "download is required" });
              const { taskIdFromUrl } = await import("../../src/common/ids.js");
              const taskId = taskIdFromUrl({ url: d.url, tag: d.tag, application: d.application, pieceLength: d.pieceLength, filteredQueryParams: d.filteredQueryParams });
              const peerId = `${seedHostId}-${requests.length}-seed`;
              const a = new Announce(client, seedHostId, taskId, peerId);
              const contentLength = d.actualContentLength ?? 8 * MiB;
              const pl = d.actualPieceLength ?? 4 * MiB;
              a.register({ ...d, actualContentLength: contentLength, actualPieceLength: pl, actualPieceCount: Math.ceil(contentLength / pl), needBackToSource: true });
              const first = await a.next();
              if (first.response?.$case !== "needBackToSourceResponse") return call.emit("error", { code: 13, details: `seed expected NeedBackToSource, got ${first.response?.$case}` });
              a.send({ $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} });
              call.write({ hostId: seedHostId, taskId, peerId, response: { $case: "downloadTaskStartedResponse", downloadTaskStartedResponse: { contentLength, responseHeader: {}, pieces: [], isFinished: false } } });
              const count = Math.ceil(contentLength / pl);
              for (let n = 0; n < count; n++) {
                const p = piece(n, pl, Math.min(pl, contentLength - n * pl));
                a.send({ $case: "downloadPieceBackToSourceFinishedRequest", downloadPieceBackToSourceFinishedRequest: { piece: p } });
                call.write({ hostId: seedHostId, taskId, peerId, response: { $case: "downloadPieceFinishedResponse", downloadPieceFinishedResponse: { piece: p } } });
              }
              a.send({ $case: "downloadPeerBackToSourceFinishedRequest", downloadPeerBackToSourceFinishedRequest: {} });
              await a.status;
              call.end();
            })();
          },
        },
      },
    ],
    "127.0.0.1",
    0,
  );
  return {
    server,
    port: server.port,
    requests,
    close: async () => {
      client.close();
      await server.close();
    },
  };
}
