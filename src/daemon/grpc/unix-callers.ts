// The download service's unix socket, accepted here rather than by grpc-js, so each connection's
// caller is known: Node has no API for SO_PEERCRED, so the daemon's own net.Server accepts, asks
// the kernel who connected (native peerCredentials on the socket's fd), and hands the socket to
// the gRPC server (grpc-js's Server.createConnectionInjector). A call finds its connection's
// credentials through call.getPeer(), the one thing grpc-js's server calls expose about their
// connection: grpc-js builds it from the socket's remoteAddress (server-interceptors.ts,
// getPeer: `socket.remoteAddress` when set, `:remotePort` appended only when there is one),
// which a unix socket leaves empty; each accepted socket gets its own
// "unix:pid=…,uid=…,gid=…#n" there, the key of its credentials until the socket closes. The name
// is made here, never by the client, and a call whose peer is not in the table has no caller
// (refused where one is needed).
import { chmod, rm } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { ServerCredentials, type Server } from "@grpc/grpc-js";
import type { Logger } from "../../common/logger.js";
import { errorMessage } from "../../common/errors.js";
import { peerCredentials, type PeerCredentials } from "../../native/index.js";

export interface UnixCallersSocket {
  /** The credentials of the connection `call` came on; undefined for a call from elsewhere. */
  callerOf(call: { getPeer(): string }): PeerCredentials | undefined;
  /**
   * Stops accepting, waits for the accepted connections to end and removes the socket file; the
   * gRPC server's shutdown (run alongside) is what ends them.
   */
  close(): Promise<void>;
}

/** The accepted socket's descriptor: libuv's pipe handle keeps it as `fd` (no public API has it). */
function fdOf(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

/** Serves `grpc`'s services on a unix socket at `path` (mode `mode`), knowing each caller. */
export async function serveUnixCallers(grpc: Server, path: string, mode: number, log: Logger): Promise<UnixCallersSocket> {
  const injector = grpc.createConnectionInjector(ServerCredentials.createInsecure());
  const callers = new Map<string, PeerCredentials>();
  let accepted = 0;
  const server = createServer((socket) => {
    const fd = fdOf(socket);
    let cred: PeerCredentials;
    try {
      if (fd === undefined) throw new Error("the accepted socket has no descriptor");
      cred = peerCredentials(fd);
    } catch (e) {
      // Without credentials the caller cannot be told apart from any other: no service.
      log.warn({ err: errorMessage(e) }, "download socket: cannot read the caller's credentials; connection closed");
      socket.destroy();
      return;
    }
    const peer = `unix:pid=${cred.pid},uid=${cred.uid},gid=${cred.gid}#${++accepted}`;
    Object.defineProperty(socket, "remoteAddress", { value: peer, enumerable: true });
    callers.set(peer, cred);
    socket.once("close", () => callers.delete(peer));
    injector.injectConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((e: unknown) => {
    injector.destroy();
    throw e;
  });
  server.on("error", (e) => log.warn({ err: errorMessage(e) }, "download socket error"));
  await chmod(path, mode);
  return {
    callerOf: (call) => callers.get(call.getPeer()),
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(path, { force: true });
    },
  };
}
