// What every Damselfly gRPC server does around every call, whatever the service: end the call
// the way grpc-go does (see stream-end.ts) and make failures that grpc-js handles on its own
// visible. grpc-js answers a request it cannot decode with "INTERNAL: Error deserializing
// request" and logs nothing, so a Dragonfly peer whose messages we cannot read (e.g. the
// 64-bit host statistics of issue #19) used to fail without a trace on our side.
import { ServerInterceptingCall, status, type ServerInterceptor, type ServiceDefinition } from "@grpc/grpc-js";
import type { Logger } from "../logger.js";
import { grpcCodeName } from "./metrics.js";
import { http2StreamOf, resetAfterStatusLikeGrpcGo, sentStatus } from "./stream-end.js";

/**
 * A server interceptor for every call: resets the HTTP/2 stream after the status like grpc-go,
 * and logs calls that grpc-js ended itself (undecodable request, message too large, deadline)
 * with the method and the peer, since those never reach the service implementation.
 */
export function serverCallInterceptor(log: Logger): ServerInterceptor {
  let unreachableLogged = false;
  return (method, call) => {
    const stream = http2StreamOf(call);
    if (!stream) {
      if (!unreachableLogged) {
        unreachableLogged = true;
        log.error({ method: method.path }, "cannot reach the HTTP/2 stream of gRPC calls (grpc-js internals changed?): streams are not reset like grpc-go does and Dragonfly clients may hang");
      }
      return new ServerInterceptingCall(call);
    }
    resetAfterStatusLikeGrpcGo(stream);
    const peer = call.getPeer();
    let statusFromService = false;
    stream.once("close", () => {
      const s = statusFromService ? undefined : sentStatus(stream);
      if (s === undefined || s.code === status.OK) return;
      const fields = { method: method.path, peer, code: grpcCodeName(s.code), details: s.details };
      if (s.code === status.DEADLINE_EXCEEDED) log.debug(fields, "gRPC call ended by grpc-js");
      else log.warn(fields, "gRPC call ended by grpc-js");
    });
    // Statuses from the service pass through here; those grpc-js produces itself do not.
    return new ServerInterceptingCall(call, {
      sendStatus: (st, next) => {
        statusFromService = true;
        next(st);
      },
    });
  };
}

/**
 * `definition` with every request decoder wrapped so that a decode failure is logged with the
 * method and the cause before grpc-js turns it into INTERNAL (the peer is logged by
 * serverCallInterceptor when the call ends: the decoder is not told which call it serves).
 */
export function withDecodeLogging(definition: ServiceDefinition, log: Logger): ServiceDefinition {
  return Object.fromEntries(
    Object.entries(definition).map(([name, m]) => {
      const decode = m.requestDeserialize;
      const requestDeserialize = (bytes: Buffer): unknown => {
        try {
          return decode(bytes);
        } catch (err) {
          log.warn({ method: m.path, bytes: bytes.length, err }, "cannot decode gRPC request; grpc-js answers INTERNAL");
          throw err;
        }
      };
      return [name, { ...m, requestDeserialize }];
    }),
  );
}
