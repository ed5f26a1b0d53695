// proxy.mirrors: the proxy as a Maven or YUM/DNF repository mirror (beyond Dragonfly, issue 23).
// A client points mvn's <mirror><url> or dnf's baseurl at `http://<proxy><prefix>`; an
// origin-form request under the prefix goes to the upstream with the prefix swapped, the way
// registry-mirror mode sends `/v2/…` to registryMirror.addr. Which requests go through the swarm
// is decided by the repository layout (`kind`), not by proxy.rules: a rule written for blobs
// could match a maven-metadata.xml or a repomd.xml, and those change in place, so a swarm copy
// would be served stale. Only paths that are immutable by construction become P2P tasks:
// - maven: release artifacts, `<group…>/<artifactId>/<version>/<artifactId>-<version>[-classifier].<ext>`
//   with a non-SNAPSHOT version. Metadata (maven-metadata*.xml), checksum and signature files,
//   SNAPSHOT directories and anything else (archetype catalogs, indexes, listings) is forwarded,
//   so the client revalidates it against the origin on every request. The checksum files stay
//   direct on purpose: they are the origin's word the client (and the proxy, see below) checks
//   the swarm's bytes against.
// - yum: packages (`*.rpm`, `*.drpm`) anywhere but under repodata/; `repodata/*` (repomd.xml
//   and the files it names) and everything else is forwarded.
// The same classification applies to a forward-proxy request whose URL is under a mirror's
// upstream, so mvn or dnf configured with the daemon as their HTTP proxy get the same split.
import type { Dispatcher } from "undici";
import { ConfigError } from "../../common/config.js";
import { ProxyRequestError } from "./headers.js";

export type MirrorKind = "maven" | "yum";

export interface MirrorConfig {
  prefix: string;
  upstream: string;
  kind: MirrorKind;
}

export interface Mirror {
  /** Path prefix on the proxy, with a leading and a trailing slash. */
  prefix: string;
  /** Upstream repository base, its path ending in a slash. */
  upstream: URL;
  kind: MirrorKind;
}

/** proxy.mirrors, checked at startup; a bad entry is a ConfigError naming its index. */
export function compileMirrors(configs: readonly MirrorConfig[]): Mirror[] {
  const out: Mirror[] = [];
  for (const [i, c] of configs.entries()) {
    const key = `proxy.mirrors.${i}`;
    const prefix = `/${c.prefix.replace(/^\/+|\/+$/g, "")}/`;
    if (prefix === "//" || prefix.startsWith("/v2/")) throw new ConfigError(`${key}.prefix: "${c.prefix}" must be a path of its own, not "/" or under /v2/ (the registry mirror's)`);
    if (/[?#%\s]|\/\.\.?\//.test(prefix)) throw new ConfigError(`${key}.prefix: "${c.prefix}" must be a plain path (no query, escapes or dot segments)`);
    let upstream: URL;
    try {
      upstream = new URL(c.upstream);
    } catch {
      throw new ConfigError(`${key}.upstream: "${c.upstream}" is not a URL`);
    }
    if (upstream.protocol !== "http:" && upstream.protocol !== "https:") throw new ConfigError(`${key}.upstream: only http and https repositories are supported, got ${upstream.protocol}`);
    if (upstream.username || upstream.password || upstream.search || upstream.hash) throw new ConfigError(`${key}.upstream: "${c.upstream}" must be a plain repository URL (no credentials, query or fragment)`);
    if (!upstream.pathname.endsWith("/")) upstream.pathname += "/";
    const clash = out.find((m) => m.prefix.startsWith(prefix) || prefix.startsWith(m.prefix));
    if (clash) throw new ConfigError(`${key}.prefix: "${prefix}" overlaps "${clash.prefix}" of another mirror`);
    out.push({ prefix, upstream, kind: c.kind });
  }
  return out;
}

/**
 * The upstream URL of an origin-form request under a mirror's prefix, or undefined when no
 * prefix matches. A path that dot segments (`..`, `%2e%2e`) would take out of the upstream's
 * repository is refused rather than followed.
 */
export function mirrorTarget(mirrors: readonly Mirror[], raw: string): { mirror: Mirror; url: URL } | undefined {
  const mirror = mirrors.find((m) => raw.startsWith(m.prefix));
  if (!mirror) return undefined;
  const rest = raw.slice(mirror.prefix.length);
  const url = new URL(rest.replace(/^\/+/, ""), mirror.upstream);
  if (url.origin !== mirror.upstream.origin || !url.pathname.startsWith(mirror.upstream.pathname)) {
    throw new ProxyRequestError(`request path "${raw.slice(0, 200)}" leaves the repository mirrored at ${mirror.prefix}`);
  }
  return { mirror, url };
}

/** The mirror whose upstream repository holds `url` (a forward-proxy request to it). */
export function mirrorOf(mirrors: readonly Mirror[], url: URL): Mirror | undefined {
  return mirrors.find((m) => url.origin === m.upstream.origin && url.pathname.startsWith(m.upstream.pathname));
}

/** Files next to an artifact that describe it: the origin's checksums and signatures. */
const SIDECAR = /\.(sha1|sha256|sha512|md5|asc|sig)$/i;

/** Whether `url` (under `mirror`'s upstream) names content that never changes: a swarm task. */
export function isImmutable(mirror: Mirror, url: URL): boolean {
  let rel: string;
  try {
    rel = decodeURIComponent(url.pathname.slice(mirror.upstream.pathname.length));
  } catch {
    return false; // a malformed escape names no artifact; forwarded, the origin answers it
  }
  const parts = rel.split("/");
  const file = parts.at(-1) ?? "";
  if (file === "" || SIDECAR.test(file)) return false;
  if (mirror.kind === "yum") return /\.d?rpm$/i.test(file) && !parts.includes("repodata");
  // maven: <group…>/<artifactId>/<version>/<artifactId>-<version>[-classifier].<ext>
  if (parts.length < 4 || file.startsWith("maven-metadata")) return false;
  const version = parts.at(-2) ?? "";
  const artifactId = parts.at(-3) ?? "";
  if (version.endsWith("-SNAPSHOT")) return false;
  const stem = `${artifactId}-${version}`;
  return file.startsWith(stem) && /^(-[^/]+)?\.[A-Za-z0-9.]+$/.test(file.slice(stem.length));
}

/**
 * The Maven checksum file the proxy reads to verify an artifact: SHA-1, the one every Maven
 * repository publishes for every file (SHA-256/512 are optional and mostly absent). SHA-1
 * collisions can be made, second preimages cannot: a peer cannot forge bytes matching the
 * origin's published checksum. YUM has none per file (checksums live in repodata, which dnf
 * checks itself against repomd.xml), so RPMs are not verified here.
 */
export function checksumUrl(mirror: Mirror, url: URL): URL | undefined {
  if (mirror.kind !== "maven") return undefined;
  const u = new URL(url.href);
  u.search = "";
  u.pathname += ".sha1";
  return u;
}

/** The hex digest in a checksum file (`<hex>` or `<hex>  <file name>`), or undefined. */
export function parseChecksumFile(text: string, hexLength: number): string | undefined {
  const token = text.trim().split(/\s+/)[0]?.toLowerCase() ?? "";
  return new RegExp(`^[0-9a-f]{${hexLength}}$`).test(token) ? token : undefined;
}

/**
 * The digest (`sha1:<hex>`) the upstream publishes for an artifact, for the task to be checked
 * against before the last bytes reach the client; undefined when the repository has no
 * checksum file for it or cannot be asked (the client still checks what it gets).
 */
export async function publishedDigest(mirror: Mirror, url: URL, dispatcher: Dispatcher, headers: Record<string, string>, signal: AbortSignal): Promise<string | undefined> {
  const sidecar = checksumUrl(mirror, url);
  if (!sidecar) return undefined;
  try {
    const r = await dispatcher.request({ origin: sidecar.origin, path: sidecar.pathname, method: "GET", headers: { ...headers, host: sidecar.host }, signal: AbortSignal.any([signal, AbortSignal.timeout(CHECKSUM_TIMEOUT_MS)]) });
    if (r.statusCode !== 200) {
      await r.body.dump();
      return undefined;
    }
    const hex = parseChecksumFile((await r.body.text()).slice(0, 1024), 40);
    return hex ? `sha1:${hex}` : undefined;
  } catch {
    return undefined;
  }
}

const CHECKSUM_TIMEOUT_MS = 10_000;
