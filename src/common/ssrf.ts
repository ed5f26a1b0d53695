// SSRF policy for fetches a remote party can trigger (preheat URLs, registry redirects, back-to-
// source downloads). By default it refuses addresses that reach the local machine or cloud
// control planes: loopback, link-local, unspecified, multicast/broadcast and well-known metadata
// endpoints. Private ranges (10/8, 192.168/16, …) are refused too with `denyPrivate`, which the
// daemon sets for fetches a remote party can aim (remoteFetchPolicy); an allowlist of CIDRs
// overrides every refusal.
//
// The check happens when the socket connects — on the address DNS actually returned — so a name
// that resolves to a public address at validation time and to 127.0.0.1 at fetch time (DNS
// rebinding) is still refused.
//
// Usage:
//   const policy = new SsrfPolicy({ allowCidrs: ["127.0.0.1/32"] });
//   await request(url, { dispatcher: policy.agent() });      // undici, checked at connect time
//   await policy.checkUrl(url);                              // early, friendly validation
//   policy.isAllowed("169.254.169.254")                      // false
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { Agent, buildConnector } from "undici";

export class SsrfError extends Error {
  override name = "SsrfError";
  readonly code = "ESSRF";
  constructor(
    readonly address: string,
    readonly host?: string,
  ) {
    super(`refusing to connect to ${host && host !== address ? `${host} (${address})` : address}: address is not allowed by the SSRF policy`);
  }
}

export interface SsrfPolicyOptions {
  /** CIDRs (e.g. "127.0.0.1/32", "fd00::/8") that are allowed even if refused by default. */
  allowCidrs?: readonly string[];
  /** Also refuse RFC 1918 / ULA private ranges and carrier-grade NAT. Off by default. */
  denyPrivate?: boolean;
}

const DENIED_V4: Array<[string, number]> = [
  ["0.0.0.0", 8], // "this network", unspecified
  ["127.0.0.0", 8], // loopback
  ["169.254.0.0", 16], // link-local, incl. AWS/GCP/Azure/OCI metadata 169.254.169.254
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, incl. broadcast
  ["100.100.100.200", 32], // Alibaba Cloud metadata
  ["168.63.129.16", 32], // Azure wire server
];
const DENIED_V6: Array<[string, number]> = [
  ["::", 128], // unspecified
  ["::1", 128], // loopback
  ["fe80::", 10], // link-local
  ["ff00::", 8], // multicast
  ["fd00:ec2::254", 128], // AWS metadata over IPv6
];
const PRIVATE_V4: Array<[string, number]> = [
  ["10.0.0.0", 8],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["100.64.0.0", 10],
];
const PRIVATE_V6: Array<[string, number]> = [["fc00::", 7]];

function parseCidr(cidr: string): { address: string; prefix: number; family: "ipv4" | "ipv6" } {
  const [address = "", bits, extra] = cidr.trim().split("/");
  const family = isIP(address);
  if (!family || extra !== undefined) throw new TypeError(`invalid CIDR "${cidr}"`);
  const max = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) throw new TypeError(`invalid CIDR "${cidr}"`);
  return { address, prefix, family: family === 4 ? "ipv4" : "ipv6" };
}

/** `::ffff:1.2.3.4` and friends are checked as the IPv4 address they carry. */
function unmap(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m?.[1] ?? ip;
}

export class SsrfPolicy {
  private readonly denied = new BlockList();
  private readonly allowed = new BlockList();

  constructor(options: SsrfPolicyOptions = {}) {
    for (const [a, p] of DENIED_V4) this.denied.addSubnet(a, p, "ipv4");
    for (const [a, p] of DENIED_V6) this.denied.addSubnet(a, p, "ipv6");
    if (options.denyPrivate) {
      for (const [a, p] of PRIVATE_V4) this.denied.addSubnet(a, p, "ipv4");
      for (const [a, p] of PRIVATE_V6) this.denied.addSubnet(a, p, "ipv6");
    }
    for (const cidr of options.allowCidrs ?? []) {
      const c = parseCidr(cidr);
      this.allowed.addSubnet(c.address, c.prefix, c.family);
    }
  }

  /** Whether a connection to this IP address may be made. Non-IP input is refused. */
  isAllowed(ip: string): boolean {
    const addr = unmap(ip.replace(/^\[|\]$/g, "").replace(/%.*$/, ""));
    const family = isIP(addr);
    if (!family) return false;
    const type = family === 4 ? "ipv4" : "ipv6";
    if (this.allowed.check(addr, type)) return true;
    return !this.denied.check(addr, type);
  }

  /** Throws SsrfError unless `ip` is allowed. */
  check(ip: string, host?: string): void {
    if (!this.isAllowed(ip)) throw new SsrfError(ip, host);
  }

  /**
   * A `dns.lookup` replacement for net/tls/undici `connect` options: resolves, drops refused
   * addresses and fails with SsrfError when none is left.
   */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...(options as object), all: true } as LookupAllOptions, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, "", 0);
      const ok = addresses.filter((a) => this.isAllowed(a.address));
      if (ok.length === 0) return callback(new SsrfError(addresses[0]?.address ?? "unresolved", hostname), "", 0);
      if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, ok);
      else callback(null, ok[0]?.address ?? "", ok[0]?.family ?? 4);
    });
  };

  /** Resolves a URL's host now and throws SsrfError when it only reaches refused addresses. */
  async checkUrl(url: string | URL): Promise<void> {
    const u = typeof url === "string" ? new URL(url) : url;
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new TypeError(`unsupported URL scheme "${u.protocol}" in ${u.href}`);
    const host = u.hostname.replace(/^\[|\]$/g, "");
    if (isIP(host)) return this.check(host);
    const addresses = await new Promise<LookupAddress[]>((resolve, reject) => dnsLookup(host, { all: true }, (e, a) => (e ? reject(e) : resolve(a))));
    if (!addresses.some((a) => this.isAllowed(a.address))) throw new SsrfError(addresses[0]?.address ?? "unresolved", host);
  }

  /**
   * An undici dispatcher whose every connection — first request and each redirect — is checked
   * against this policy, on the address actually connected to.
   */
  agent(options: Agent.Options = {}): Agent {
    const connector = buildConnector({ ...(options.connect as buildConnector.BuildOptions | undefined), lookup: this.lookup });
    return new Agent({
      ...options,
      connect: (opts, callback) => {
        const host = opts.hostname.replace(/^\[|\]$/g, "");
        // IP literals never go through `lookup`, so they are checked here.
        if (isIP(host) && !this.isAllowed(host)) return callback(new SsrfError(host), null);
        connector(opts, (err, socket) => {
          if (err || !socket) return callback(err ?? new Error("connect failed"), null);
          const remote = (socket).remoteAddress;
          if (remote !== undefined && !this.isAllowed(remote)) {
            socket.destroy();
            return callback(new SsrfError(remote, host), null);
          }
          callback(null, socket);
        });
      },
    });
  }
}

/**
 * The daemon's policy for fetches another party aims: the upload service's DownloadTask
 * (schedulers' seed triggers, managers' preheats) and the proxy's client-chosen upstreams. An
 * attacker who can reach those ports could otherwise make the daemon fetch from the private
 * network behind it (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) and read the result from
 * the piece port; `allowCidrs` (security.allowedBackToSourceCIDRs) names the ones that are
 * origins. Local dfget over the unix socket is not checked at all.
 */
export function remoteFetchPolicy(allowCidrs: readonly string[]): SsrfPolicy {
  return new SsrfPolicy({ allowCidrs, denyPrivate: true });
}
