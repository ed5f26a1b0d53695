// Where a proxied request goes, from its request-target and headers alone: the pure step of
// the proxy's request handling (no sockets), so it can be fuzzed (issue 21). A request the
// proxy cannot route is refused with ProxyRequestError naming what was wrong with it.
import type { IncomingHttpHeaders } from "node:http";
import { H, ProxyRequestError, single } from "./headers.js";
import { mirrorOf, mirrorTarget, type Mirror } from "./mirrors.js";
import type { RegistrySchemes } from "./registry-scheme.js";

export interface Target {
  url: URL;
  /** A client picked this upstream: the SSRF policy applies. */
  chosen: boolean;
  /** The Maven/YUM repository mirror (proxy.mirrors) whose upstream holds the URL. */
  mirror?: Mirror | undefined;
}

/** An absolute-form request target: http(s) only. */
export function parseAbsolute(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ProxyRequestError(`request target "${raw.slice(0, 200)}" is neither a path nor an absolute http(s) URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new ProxyRequestError(`unsupported scheme ${u.protocol} in request target`);
  return u;
}

/**
 * The target of a request: inside a CONNECT tunnel, the tunnel's origin; an origin-form
 * request under a repository mirror's prefix goes to its upstream, any other (registry-mirror
 * mode) to X-Dragonfly-Registry, else containerd's `?ns=`, else proxy.registryMirror.addr
 * (`mirror`); an absolute-form one goes where it names.
 */
export async function requestTarget(raw: string, headers: IncomingHttpHeaders, tunnel: { host: string; port: number } | undefined, schemes: RegistrySchemes, mirror: URL, mirrors: readonly Mirror[] = []): Promise<Target> {
  if (!tunnel && raw.startsWith("/")) {
    const repo = mirrorTarget(mirrors, raw);
    // The operator configured the upstream, like registryMirror.addr: not a client's choice.
    if (repo) return { url: repo.url, chosen: false, mirror: repo.mirror };
  }
  const t = await targetOf(raw, headers, tunnel, schemes, mirror);
  return { ...t, mirror: mirrorOf(mirrors, t.url) };
}

async function targetOf(raw: string, headers: IncomingHttpHeaders, tunnel: { host: string; port: number } | undefined, schemes: RegistrySchemes, mirror: URL): Promise<Target> {
  if (tunnel) {
    const origin = `https://${tunnel.host.includes(":") ? `[${tunnel.host}]` : tunnel.host}:${tunnel.port}`;
    if (raw.startsWith("/")) return { url: new URL(`${origin}${raw}`), chosen: true };
    const abs = parseAbsolute(raw);
    if (abs.origin !== new URL(origin).origin) throw new ProxyRequestError(`request for ${abs.origin} inside a tunnel to ${origin}`);
    return { url: abs, chosen: true };
  }
  if (raw.startsWith("/")) {
    const header = single(headers, H.registry);
    const query = new URLSearchParams(raw.includes("?") ? raw.slice(raw.indexOf("?")) : "");
    const ns = query.get("ns") ?? undefined;
    const named = header !== undefined ? await schemes.resolve(header, H.registry) : ns !== undefined ? await schemes.resolve(ns, "ns query parameter") : undefined;
    const base = named?.url ?? mirror;
    // A registry the operator listed is theirs to reach, like registryMirror.addr.
    return { url: new URL(`${base.origin}${base.pathname.replace(/\/+$/, "")}${raw}`), chosen: named !== undefined && !named.configured };
  }
  return { url: parseAbsolute(raw), chosen: true };
}
