// Our gRPC servers end calls the way grpc-go does: once the status is out, a client whose
// request stream is still open gets RST_STREAM(NO_ERROR). Dragonfly's Rust client (tonic/h2)
// waits for exactly that after AnnouncePeer, so without it every dfget hangs (issue #19).
// A raw HTTP/2 client (node:http2) stands in for h2: it never half-closes its side, so the only
// way its stream can close is the server's reset. Also covered here: a Rust dfdaemon's
// AnnounceHost with 64-bit host statistics is accepted, and a request grpc-js cannot decode is
// logged with the method and the peer.
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { status } from "@grpc/grpc-js";
import { connect, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGrpcServer } from "../../src/common/grpc/server.js";
import { instrumentService } from "../../src/common/grpc/metrics.js";
import { taskIdFromUrl } from "../../src/common/ids.js";
import { createLogger, silentLogger } from "../../src/common/logger.js";
import { createRegistry } from "../../src/common/metrics.js";
import { KeepAliveRequest, ManagerService, SourceType } from "../../src/gen/manager/v2/manager.js";
import { AnnouncePeerRequest, AnnouncePeerResponse } from "../../src/gen/scheduler/v2/scheduler.js";
import { ManagerGrpcService } from "../../src/manager/grpc/service.js";
import { ManagerMetrics } from "../../src/manager/metrics.js";
import { databaseVariants } from "../../src/manager/testing.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { announceHost, download, hostMsg, startTestScheduler, unaryCall } from "./scheduler-helpers.js";

/** How long a stream may stay open after its status before we call it a hang. */
const HANG_MS = 3000;

interface CallEnd {
  /** grpc-status from the trailers, or from the headers of a trailers-only response. */
  code: number;
  message: string | undefined;
  rstCode: number;
  /** Client-side events in order: "headers", "trailers", "close". */
  events: string[];
}

/** A gRPC call over a bare HTTP/2 stream whose request side stays open unless end() is called. */
class RawCall {
  readonly stream: ClientHttp2Stream;
  readonly events: string[] = [];
  private headers: IncomingHttpHeaders | undefined;
  private trailers: IncomingHttpHeaders | undefined;
  private buffered = Buffer.alloc(0);
  private readonly messages: Buffer[] = [];
  private waiters: Array<() => void> = [];
  readonly ended: Promise<CallEnd>;

  constructor(session: ClientHttp2Session, path: string) {
    this.stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
    this.stream.on("response", (h: IncomingHttpHeaders) => {
      this.headers = h;
      this.events.push("headers");
      this.wake();
    });
    this.stream.on("trailers", (t: IncomingHttpHeaders) => {
      this.trailers = t;
      this.events.push("trailers");
    });
    this.stream.on("data", (chunk: Buffer) => this.onData(chunk));
    this.stream.on("error", () => undefined);
    this.ended = new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const armHangTimer = () => {
        timer ??= setTimeout(() => reject(new Error(`${path}: request stream still open ${HANG_MS} ms after the status (no RST_STREAM from the server); events: ${this.events.join(",")}`)), HANG_MS);
      };
      this.stream.on("trailers", armHangTimer);
      this.stream.on("response", (h: IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) armHangTimer(); // trailers-only response
      });
      this.stream.on("close", () => {
        clearTimeout(timer);
        this.events.push("close");
        const last = this.trailers ?? this.headers ?? {};
        const message = last["grpc-message"];
        resolve({ code: Number(last["grpc-status"] ?? -1), message: typeof message === "string" ? decodeURIComponent(message) : undefined, rstCode: this.stream.rstCode ?? -1, events: this.events });
      });
    });
  }

  /** Writes one length-prefixed gRPC message (uncompressed). */
  send(message: Uint8Array): void {
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(message.length, 1);
    this.stream.write(Buffer.concat([prefix, message]));
  }

  /** The next response message. */
  async next(): Promise<Buffer> {
    for (;;) {
      const m = this.messages.shift();
      if (m) return m;
      if (this.stream.closed) throw new Error("stream closed before the next message");
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private onData(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 5) {
      const len = this.buffered.readUInt32BE(1);
      if (this.buffered.length < 5 + len) break;
      this.messages.push(this.buffered.subarray(5, 5 + len));
      this.buffered = this.buffered.subarray(5 + len);
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** The status arrived, then the stream closed by RST_STREAM(NO_ERROR) while our side was still open. */
function expectResetAfterStatus(end: CallEnd, code: status): void {
  expect(end.code).toBe(code);
  expect(end.rstCode).toBe(0); // NGHTTP2_NO_ERROR
  expect(end.events.at(-1)).toBe("close");
}

describe("scheduler.v2.Scheduler", () => {
  let handle: SchedulerHandle;
  let client: Awaited<ReturnType<typeof startTestScheduler>>["client"];
  let session: ClientHttp2Session;
  const hostId = "10.0.0.1-stream-end";

  beforeAll(async () => {
    ({ handle, client } = await startTestScheduler());
    await announceHost(client, hostMsg(hostId));
    session = connect(`http://127.0.0.1:${handle.grpcPort}`);
    session.on("error", () => undefined);
  });

  afterAll(async () => {
    session?.close();
    client?.close();
    await handle?.close();
  });

  it("AnnouncePeer: after Finished the scheduler sends OK, then resets the request stream the peer left open", async () => {
    const url = "https://origin.example.com/stream-end-empty";
    const taskId = taskIdFromUrl({ url });
    const peerId = "peer-stream-end-1";
    const call = new RawCall(session, "/scheduler.v2.Scheduler/AnnouncePeer");
    const send = (request: AnnouncePeerRequest["request"]) => call.send(AnnouncePeerRequest.encode({ hostId, taskId, peerId, request }).finish());
    send({ $case: "registerPeerRequest", registerPeerRequest: { download: download(url, 0) } });
    expect(AnnouncePeerResponse.decode(await call.next()).response?.$case).toBe("emptyTaskResponse");
    send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
    send({ $case: "downloadPeerFinishedRequest", downloadPeerFinishedRequest: {} });
    const end = await call.ended;
    expectResetAfterStatus(end, status.OK);
    expect(end.events.slice(-2)).toEqual(["trailers", "close"]);
  });

  it("AnnouncePeer: an error before any response (trailers-only) also resets the open request stream", async () => {
    const call = new RawCall(session, "/scheduler.v2.Scheduler/AnnouncePeer");
    call.send(AnnouncePeerRequest.encode({ hostId: "", taskId: "", peerId: "", request: { $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} } }).finish());
    const end = await call.ended;
    expectResetAfterStatus(end, status.INVALID_ARGUMENT);
    expect(end.events).toEqual(["headers", "close"]); // trailers-only: the status rides on the headers
  });

  it("AnnounceHost from a Rust dfdaemon with cgroup memory limit 2^63-4096 and uint64 statistics at 2^64-1 succeeds", async () => {
    const U64_MAX = 2n ** 64n - 1n;
    const w = new BinaryWriter();
    w.uint32(0x0a).fork(); // host = 1
    w.uint32(0x0a).string("127.0.0.1-rust-dfdaemon"); // id = 1
    w.uint32(0x1a).string("rust-dfdaemon"); // hostname = 3
    w.uint32(0x22).string("127.0.0.1"); // ip = 4
    w.uint32(0x28).int32(4000); // port = 5
    w.uint32(0x30).int32(4000); // download_port = 6
    w.uint32(0x6a).fork(); // memory = 13
    w.uint32(0x08).uint64(U64_MAX); // total = 1
    w.uint32(0x3a).fork().uint32(0x08).int64(9223372036854771712n).uint32(0x10).uint64(U64_MAX).join(); // cgroup = 7 {limit, usage}
    w.join();
    w.uint32(0x72).fork().uint32(0x48).uint64(U64_MAX).uint32(0x58).uint64(U64_MAX).join(); // network = 14 {max_rx, max_tx}
    w.join();
    const call = new RawCall(session, "/scheduler.v2.Scheduler/AnnounceHost");
    call.send(w.finish());
    call.stream.end();
    const end = await call.ended;
    expect(end.code, end.message).toBe(status.OK);
    const { hosts } = await unaryCall(client.listHosts.bind(client), {});
    expect(hosts.map((h) => h.id)).toContain("127.0.0.1-rust-dfdaemon");
  });
});

describe("manager.v2.Manager", () => {
  it("KeepAlive (client streaming): a rejected stream is reset instead of waiting for the seed peer to half-close", async () => {
    const variant = databaseVariants().variants[0];
    if (!variant) throw new Error("no PGlite database variant");
    const opened = await variant.open();
    const metrics = new ManagerMetrics(createRegistry(false));
    const svc = new ManagerGrpcService(opened.db, silentLogger(), metrics);
    const server = await startGrpcServer([{ definition: ManagerService, implementation: instrumentService(ManagerService, svc.handlers(), metrics.registry) }], "127.0.0.1", 0, undefined, silentLogger());
    const session = connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => undefined);
    try {
      const call = new RawCall(session, "/manager.v2.Manager/KeepAlive");
      call.send(KeepAliveRequest.encode({ sourceType: SourceType.PEER_SOURCE, hostname: "peer", clusterId: 1, ip: "127.0.0.1" }).finish());
      const end = await call.ended;
      expectResetAfterStatus(end, status.INVALID_ARGUMENT);
      expect(end.events).toEqual(["headers", "close"]);
    } finally {
      session.close();
      await server.close();
      await opened.cleanup();
    }
  });
});

describe("requests grpc-js cannot decode", () => {
  it("are answered INTERNAL, reset, and logged with the method and the peer", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger({ component: "grpc-test", level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const server = await startGrpcServer([], "127.0.0.1", 0, undefined, log);
    const session = connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => undefined);
    try {
      const call = new RawCall(session, "/grpc.health.v1.Health/Check");
      call.send(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])); // field 1, length 2^32-1: truncated
      const end = await call.ended;
      expectResetAfterStatus(end, status.INTERNAL);
      expect(end.events).toEqual(["headers", "close"]);
      const decodeLine = lines.find((l) => l.msg === "cannot decode gRPC request; grpc-js answers INTERNAL");
      expect(decodeLine).toMatchObject({ level: 40, method: "/grpc.health.v1.Health/Check", bytes: 6 });
      const endLine = lines.find((l) => l.msg === "gRPC call ended by grpc-js");
      expect(endLine).toMatchObject({ level: 40, method: "/grpc.health.v1.Health/Check", code: "Internal", details: "Error deserializing request" });
      expect(endLine?.peer).toBe(`127.0.0.1:${session.socket.localPort}`);
    } finally {
      session.close();
      await server.close();
    }
  });
});
