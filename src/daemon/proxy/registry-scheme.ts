// Which scheme a registry speaks when the client named it without one. containerd's catch-all
// mirror (`_default/hosts.toml`, written by `damselfly init containerd`) sends only the host,
// as `?ns=127.0.0.1:5000`, and X-Dragonfly-Registry may be a bare host:port too. Assuming
// https there makes a plain-HTTP registry answer 502 ("wrong version number"), and containerd
// then silently pulls from the registry directly: the mirror is bypassed, no byte goes
// through the swarm.
//
// The scheme comes from, in order:
// 1. proxy.registryMirror.registries (and registryMirror.addr): the operator's word, scheme and
//    path prefix included; such a registry is an operator-chosen upstream (not SSRF-checked);
// 2. a probe, once per host:port (cached): a TLS handshake; a server that answers it in plain
//    HTTP is a plain-HTTP registry. Plaintext is accepted only for loopback hosts and hosts
//    the operator listed: for any other host a network attacker could make the registry look
//    plain-HTTP and strip TLS, so it is refused, naming the config key that allows it.
import { isIP } from "node:net";
import type { Dispatcher } from "undici";
import { ConfigError } from "../../common/config.js";
import { ProxyRequestError } from "./headers.js";
import { causeChain, errorCode } from "./refusals.js";
import { errorMessage } from "../../common/errors.js";

export type Scheme = "http:" | "https:";

/** Learns what the server at `https://host:port` speaks; throws when it cannot be reached. */
export type SchemeProbe = (origin: string) => Promise<Scheme>;

export interface RegistryBase {
  /** Scheme, authority and path prefix of the registry. */
  url: URL;
  /** The operator configured this registry: an operator-chosen upstream. */
  configured: boolean;
}

/** A registry base URL given with its scheme: http(s) only, no query, no credentials. */
export function parseRegistryUrl(value: string, source: string): URL {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new ProxyRequestError(`${source}: "${value}" is not a registry address`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new ProxyRequestError(`${source}: only http and https registries are supported, got ${u.protocol}`);
  if (u.username || u.password || u.search || u.hash) throw new ProxyRequestError(`${source}: "${value}" must be a plain registry URL (no credentials, query or fragment)`);
  return u;
}

/** proxy.registryMirror.registries, checked at startup; a bad entry is a ConfigError naming its index. */
export function parseConfiguredRegistries(values: readonly string[]): URL[] {
  return values.map((v, i) => {
    const key = `proxy.registryMirror.registries.${i}`;
    if (!/^https?:\/\//i.test(v)) throw new ConfigError(`${key}: "${v}" must be a registry URL with its scheme, e.g. http://${v}`);
    try {
      return parseRegistryUrl(v, key);
    } catch (e) {
      throw new ConfigError(errorMessage(e));
    }
  });
}

/** Loopback by literal name: the one place where a plain-HTTP registry needs no configuration. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  return h === "::1" || /^::ffff:127\./.test(h);
}

const defaultPort = (scheme: string) => (scheme === "http:" ? 80 : 443);

/** Scheme-less `host[:port][/prefix]`; userinfo, query and fragment are refused. */
function parseBare(value: string, source: string): { host: string; port: number | undefined; path: string } {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?(\/[^?#\s]*)?$/.exec(value.trim());
  const port = m?.[2] !== undefined ? Number(m[2]) : undefined;
  if (!m?.[1] || (port !== undefined && (port < 1 || port > 65535))) throw new ProxyRequestError(`${source}: "${value}" is not a registry address (expected host[:port] or an http(s) URL)`);
  // The WHATWG parser canonicalises the host (case, IDNA, IPv4 forms) as it will be connected to.
  let host: string;
  try {
    host = new URL(`https://${m[1]}`).hostname;
  } catch {
    throw new ProxyRequestError(`${source}: "${value}" is not a registry address`);
  }
  return { host, port, path: m[3] ?? "" };
}

/**
 * Learned schemes by host:port: bounded (oldest learned first out) and expiring, so a
 * registry that moves to TLS is noticed, and a flood of made-up hosts cannot grow memory.
 */
export class SchemeCache {
  private readonly entries = new Map<string, { scheme: Scheme; expires: number }>();
  constructor(
    private readonly max = 1024,
    private readonly ttlMs = 10 * 60_000,
    private readonly now: () => number = () => Date.now(),
  ) {}

  get(key: string): Scheme | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires > this.now()) return e.scheme;
    this.entries.delete(key);
    return undefined;
  }

  set(key: string, scheme: Scheme): void {
    this.entries.delete(key);
    this.entries.set(key, { scheme, expires: this.now() + this.ttlMs });
    while (this.entries.size > this.max) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}

export interface RegistrySchemesOptions {
  /** proxy.registryMirror.registries and registryMirror.addr. */
  configured: readonly URL[];
  probe: SchemeProbe;
  cache?: SchemeCache;
}

export class RegistrySchemes {
  private readonly cache: SchemeCache;
  /** One probe per host:port at a time; concurrent pulls of a new registry wait for it. */
  private readonly inflight = new Map<string, Promise<Scheme>>();

  constructor(private readonly o: RegistrySchemesOptions) {
    this.cache = o.cache ?? new SchemeCache();
  }

  /** Whether the operator listed this registry (same origin). */
  isConfigured(url: URL): boolean {
    return this.o.configured.some((c) => c.origin === url.origin);
  }

  /** The registry named by X-Dragonfly-Registry or `ns`, with or without a scheme. */
  async resolve(value: string, source: string): Promise<RegistryBase> {
    if (value.includes("://")) {
      const url = parseRegistryUrl(value, source);
      return { url, configured: this.isConfigured(url) };
    }
    // `host` is spelt as WHATWG URL's hostname (IPv6 in brackets), comparable with the configured ones.
    const { host, port, path } = parseBare(value, source);
    const known = this.o.configured.find((c) => c.hostname === host && (port === undefined ? c.port === "" : Number(c.port || defaultPort(c.protocol)) === port));
    if (known) {
      const url = new URL(`${known.protocol}//${known.host}${path || known.pathname}`);
      return { url, configured: true };
    }
    // Without a port the registry is at 443, whatever it speaks there.
    const authority = `${host}:${port ?? 443}`;
    let scheme: Scheme;
    try {
      scheme = await this.learn(authority);
    } catch (e) {
      throw new ProxyRequestError(`${source}: cannot reach registry ${authority} to learn whether it speaks https or plain http: ${errorMessage(e)}`, 502, "upstream_unreachable", { cause: e });
    }
    if (scheme === "http:" && !this.plainHttpAllowed(host)) {
      throw new ProxyRequestError(
        `${source}: registry ${authority} speaks plain HTTP; the proxy only downgrades to plain HTTP for loopback or configured registries (a network attacker could strip TLS otherwise): add "http://${authority}" to proxy.registryMirror.registries if this registry is meant to be plain HTTP`,
        502,
        "plain_http_registry",
      );
    }
    const url = new URL(`${scheme}//${port === undefined && scheme === "https:" ? host : authority}${path}`);
    return { url, configured: false };
  }

  private plainHttpAllowed(hostname: string): boolean {
    return isLoopbackHost(hostname) || this.o.configured.some((c) => c.hostname === hostname);
  }

  private learn(authority: string): Promise<Scheme> {
    const cached = this.cache.get(authority);
    if (cached) return Promise.resolve(cached);
    let p = this.inflight.get(authority);
    if (!p) {
      // Only an answer is cached: an unreachable registry is probed again on the next request.
      p = this.o
        .probe(`https://${authority}`)
        .then((scheme) => {
          this.cache.set(authority, scheme);
          return scheme;
        })
        .finally(() => this.inflight.delete(authority));
      this.inflight.set(authority, p);
    }
    return p;
  }
}

/** OpenSSL's reading of a plain-HTTP answer to our ClientHello ("HTTP/1.1 400" is no TLS record). */
const PLAIN_HTTP = /wrong version number|WRONG_VERSION_NUMBER|packet length too long|PACKET_LENGTH_TOO_LONG|http request|HTTP\/1\.[01] \d{3}/i;
/** The server did speak TLS; its certificate or handshake is the real request's business. */
const SPOKE_TLS = /^(ERR_TLS_|CERT_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|HOSTNAME_MISMATCH|ERR_SSL_TLSV1_ALERT|ERR_SSL_SSLV3_ALERT)/;

/** What a failed TLS probe says about the server: plain HTTP, TLS after all, or nothing (unreachable). */
export function schemeFromProbeError(e: unknown): Scheme | undefined {
  for (const cur of causeChain(e)) {
    const code = errorCode(cur);
    if (PLAIN_HTTP.test(code) || PLAIN_HTTP.test(cur.message)) return "http:";
    if (SPOKE_TLS.test(code)) return "https:";
  }
  return undefined;
}

/**
 * The default probe: `GET https://host:port/v2/` through `dispatcher` (the SSRF-checked one for
 * client-chosen upstreams, so a probe reaches nothing a request could not). Any HTTP answer
 * means TLS works; the connection it opened is kept for the request that follows.
 */
export function dispatcherProbe(dispatcher: Dispatcher, timeoutMs = 10_000): SchemeProbe {
  return async (origin) => {
    try {
      const r = await dispatcher.request({ origin, path: "/v2/", method: "GET", headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) });
      await r.body.dump();
      return "https:";
    } catch (e) {
      const scheme = schemeFromProbeError(e);
      if (scheme) return scheme;
      throw e;
    }
  };
}
