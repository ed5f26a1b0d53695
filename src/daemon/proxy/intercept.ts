// Which CONNECT tunnels the proxy terminates with its own CA (intercepts) and which it passes
// through as a plain TCP tunnel. Dragonfly's Go client intercepts only hosts that
// `proxy.hijackHTTPS.hosts[].regx` matches (against the CONNECT authority, host:port) and
// tunnels every other CONNECT; intercepting everything, as we used to, put a stranger's TLS
// (bank, mail, package signing) under a CA on disk. We intercept a host when:
// - a hijackHTTPS regx matches its authority (Dragonfly's key), or
// - it is the host of registryMirror.addr or of one of registryMirror.registries, or
// - a proxy.rules regex names it literally at its start (`^https://registry\.example\.com/…`).
// A rule such as `blobs/sha256.*` names no host: it still applies to requests that reach the
// proxy (registry-mirror mode, plain HTTP, intercepted tunnels) but makes no tunnel intercepted.
//
// The same analysis gives the generated CA its X.509 name constraints (ca.ts): the literal hosts
// are the only names it may vouch for.
import { isIP } from "node:net";
import { ConfigError } from "../../common/config.js";
import { errorMessage } from "../../common/errors.js";

export interface InterceptConfig {
  rules: ReadonlyArray<{ regex: string }>;
  registryMirror: { addr: string; registries: readonly string[] };
  hijackHTTPS: { hosts: ReadonlyArray<{ regx: string }> };
}

/** The names the CA may sign for, the input to its name-constraints extension. */
export interface NameScope {
  /** DNS names (each also permits its subdomains, RFC 5280 4.2.1.10). */
  dnsNames: string[];
  /** IP addresses, each permitted as a single address. */
  ips: string[];
  /**
   * A hijackHTTPS regx that is not a literal host can match DNS names nobody can list in
   * advance: no permitted DNS subtree can be derived then (see ca.ts for what is chosen).
   */
  anyDnsName: boolean;
}

const HOST_LITERAL = /^(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+$/;

/** `registry\.example\.com` → `registry.example.com`; undefined when any regex syntax remains. */
function unescapeLiteral(text: string): string | undefined {
  const plain = text.replace(/\\\./g, ".");
  if (HOST_LITERAL.test(plain) && (plain.includes(".") || plain === "localhost")) return plain.toLowerCase();
  if (isIP(plain)) return plain.toLowerCase();
  const v6 = /^\\?\[([0-9A-Fa-f:.]+)\\?\]$/.exec(plain);
  if (v6?.[1] && isIP(v6[1]) === 6) return v6[1].toLowerCase();
  return undefined;
}

/** The host a hijackHTTPS regx names literally (`^?host(:port)?$?`), if it is one. */
export function literalHijackHost(regx: string): string | undefined {
  const body = regx.replace(/^\^/, "").replace(/\$$/, "").replace(/:\d{1,5}$/, "");
  return unescapeLiteral(body);
}

/** The host a proxy.rules regex names literally at its start (after `^` and the scheme), if any. */
export function literalRuleHost(regex: string): string | undefined {
  const m = /^\^?(?:https?\??:(?:\\?\/){2})?((?:\\?\[[0-9A-Fa-f:.]+\\?\])|(?:[A-Za-z0-9-]+\\\.)+[A-Za-z0-9-]+|\d+\\\.\d+\\\.\d+\\\.\d+)(?::\d{1,5})?(?:\\?\/|\$|$)/.exec(regex);
  return m?.[1] ? unescapeLiteral(m[1]) : undefined;
}

function urlHost(raw: string): string | undefined {
  try {
    const u = new URL(raw.includes("://") ? raw : `https://${raw}`);
    return u.hostname.replace(/^\[|\]$/g, "").toLowerCase() || undefined;
  } catch {
    return undefined;
  }
}

export class InterceptPolicy {
  private readonly hosts = new Set<string>();
  private readonly hijack: RegExp[] = [];
  readonly scope: NameScope;

  constructor(c: InterceptConfig) {
    let anyDnsName = false;
    for (const [i, h] of c.hijackHTTPS.hosts.entries()) {
      try {
        this.hijack.push(new RegExp(h.regx));
      } catch (e) {
        throw new ConfigError(`proxy.hijackHTTPS.hosts.${i}.regx: ${errorMessage(e)}`);
      }
      const literal = literalHijackHost(h.regx);
      if (literal) this.hosts.add(literal);
      else anyDnsName = true;
    }
    for (const raw of [c.registryMirror.addr, ...c.registryMirror.registries]) {
      const h = urlHost(raw);
      if (h) this.hosts.add(h);
    }
    for (const r of c.rules) {
      const h = literalRuleHost(r.regex);
      if (h) this.hosts.add(h);
    }
    const all = [...this.hosts].sort();
    this.scope = { dnsNames: all.filter((h) => !isIP(h)), ips: all.filter((h) => isIP(h)), anyDnsName };
  }

  /**
   * Whether a CONNECT to `host:port` is intercepted. An IP address only a hijack regex matches
   * is tunnelled: the CA's name constraints do not permit it, so a leaf for it would not verify.
   */
  intercepts(host: string, port: number): boolean {
    const name = host.replace(/^\[|\]$/g, "").toLowerCase();
    if (this.hosts.has(name)) return true;
    if (isIP(name)) return false;
    const authority = `${name}:${port}`;
    return this.hijack.some((re) => re.test(authority));
  }
}
