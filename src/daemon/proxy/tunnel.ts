// A CONNECT the proxy does not intercept (intercept.ts) is a plain TCP tunnel, as in Dragonfly's
// Go client: the client's TLS goes end to end and the proxy sees only the authority. The
// upstream is the client's choice, so the SSRF policy applies on the address actually connected
// to (DNS is resolved through the policy's lookup; IP literals are checked first).
import { connect, isIP, type Socket } from "node:net";
import type { SsrfPolicy } from "../../common/ssrf.js";

const CONNECT_TIMEOUT_MS = 30_000;

/** Connects to `host:port` under the SSRF policy; rejects with SsrfError or the socket's error. */
export function dialTunnel(host: string, port: number, ssrf: SsrfPolicy): Promise<Socket> {
  return new Promise((resolve, reject) => {
    try {
      if (isIP(host)) ssrf.check(host);
    } catch (e) {
      return reject(e instanceof Error ? e : new Error(String(e)));
    }
    const upstream = connect({ host, port, lookup: ssrf.lookup, timeout: CONNECT_TIMEOUT_MS });
    const fail = (e: Error) => {
      upstream.destroy();
      reject(e);
    };
    upstream.once("error", fail);
    upstream.once("timeout", () => fail(new Error(`connect timeout to ${host}:${port}`)));
    upstream.once("connect", () => {
      upstream.off("error", fail);
      upstream.setTimeout(0);
      const remote = upstream.remoteAddress;
      try {
        if (remote !== undefined) ssrf.check(remote, host);
      } catch (e) {
        return fail(e as Error);
      }
      resolve(upstream);
    });
  });
}

/** Splices the client and upstream sockets; either side closing or failing closes both. */
export function splice(client: Socket, upstream: Socket, head: Buffer): void {
  if (head.length > 0) upstream.write(head);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on("error", close);
  upstream.on("error", close);
  client.on("close", close);
  upstream.on("close", close);
  client.pipe(upstream);
  upstream.pipe(client);
}
