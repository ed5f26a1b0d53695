// Ending every gRPC call the way grpc-go does. When grpc-go's server has written the status
// (trailers with END_STREAM) while the client has not half-closed its side yet, it also sends
// RST_STREAM(NO_ERROR) so that the client's request stream ends (grpc-go
// internal/transport/http2_server.go, finishStream with rst when the stream is still active).
// grpc-js does not, and Dragonfly's Rust client (tonic/h2) waits for the server to close its
// AnnouncePeer request stream: without the reset every dfget hangs after its file is complete
// and the Rust dfdaemon hangs on SIGTERM. The same holds for SyncPieces, manager KeepAlive and
// every other streaming method, so it is applied to every call of every server.
//
// grpc-js (checked against @grpc/grpc-js 1.14.7) offers no supported way to reach a call's
// HTTP/2 stream, so this file is the one place that reads its internals:
//   - BaseServerInterceptingCall.stream: the http2.ServerHttp2Stream of the call;
//   - ServerInterceptingCall.nextCall: the next call in an interceptor chain.
// If an upgrade renames them, http2StreamOf() returns undefined, the server logs an error and
// test/integration/grpc-stream-end.test.ts fails.
import { constants, type ServerHttp2Stream } from "node:http2";
import type { ServerInterceptingCallInterface, status } from "@grpc/grpc-js";

/** How many event-loop turns to poll with setImmediate before backing off to timers. */
const IMMEDIATE_POLLS = 8;
const MAX_POLL_DELAY_MS = 100;

function isServerHttp2Stream(value: unknown): value is ServerHttp2Stream {
  const s = value as Partial<ServerHttp2Stream> | null | undefined;
  return typeof s?.close === "function" && typeof s.respond === "function" && typeof s.sendTrailers === "function" && "state" in s;
}

/** The HTTP/2 stream under a server call (the one grpc-js hands to server interceptors). */
export function http2StreamOf(call: ServerInterceptingCallInterface): ServerHttp2Stream | undefined {
  let c: unknown = call;
  // Interceptor chains are short; the bound only guards against a cycle after an upgrade.
  for (let depth = 0; depth < 32 && typeof c === "object" && c !== null; depth++) {
    const { stream, nextCall } = c as { stream?: unknown; nextCall?: unknown };
    if (isServerHttp2Stream(stream)) return stream;
    c = nextCall;
  }
  return undefined;
}

/**
 * Arms `stream` so that, once the status has been written, it is reset with NO_ERROR if the
 * client's half is still open. Safe to arm on every call: a client that half-closed first (every
 * unary call, a finished client stream) gets a normal close and no reset.
 */
export function resetAfterStatusLikeGrpcGo(stream: ServerHttp2Stream): void {
  let polls = 0;
  const check = (): void => {
    if (stream.destroyed || stream.closed) return;
    const { localClose, remoteClose } = stream.state;
    // The client half-closed: our END_STREAM completes the stream, as with grpc-go.
    if (remoteClose === 1) return;
    if (localClose !== 1) {
      // grpc-js has queued the status but nghttp2 has not written the END_STREAM frame yet
      // (it follows queued DATA, possibly behind flow control). A reset submitted now would put
      // the stream into nghttp2's "closing" state and drop the trailers, so wait until they are
      // out. Usually that takes one or two turns of the event loop.
      polls++;
      if (polls <= IMMEDIATE_POLLS) setImmediate(check);
      else setTimeout(check, Math.min(2 ** (polls - IMMEDIATE_POLLS), MAX_POLL_DELAY_MS)).unref();
      return;
    }
    stream.close(constants.NGHTTP2_NO_ERROR);
  };
  // grpc-js ends the writable side exactly when it sends the status: end() followed by
  // sendTrailers() on 'wantTrailers', or respond({ endStream: true }) for a trailers-only reply.
  stream.once("finish", check);
}

/** The status a call ended with, from its trailers or its trailers-only response headers. */
export function sentStatus(stream: ServerHttp2Stream): { code: status; details: string } | undefined {
  const h = stream.sentTrailers ?? stream.sentHeaders;
  const code = h?.["grpc-status"];
  if (code === undefined) return undefined;
  const message = h?.["grpc-message"];
  let details = typeof message === "string" ? message : "";
  try {
    details = decodeURI(details); // grpc-js percent-encodes grpc-message
  } catch {
    // Keep the encoded form.
  }
  return { code: Number(code) as status, details };
}
