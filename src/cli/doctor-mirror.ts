// `damselfly doctor --mirror IMAGE`: pulls an image's manifest, config and smallest layer
// through the registry mirror the way containerd's catch-all `_default/hosts.toml` does
// (`GET {proxy}/v2/<repo>/manifests/<tag>?ns=<registry>`), and says whether the blobs really
// came through the swarm (X-Dragonfly-Task-ID) and whether their digests hold. A runtime whose
// mirror request fails pulls from the registry directly without a word, so this is how an
// operator learns the mirror is bypassed.
import { createHash } from "node:crypto";
import { request } from "undici";
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES } from "../common/oci/resolver.js";
import { readUpEndpoint, UP_DIR, UP_ENDPOINT_FILE } from "./endpoint.js";

/** Where the mirror check goes when neither --proxy-addr nor a running `damselfly up` says otherwise (Dragonfly's proxy port). */
export const DEFAULT_PROXY_ADDR = "http://127.0.0.1:4001";
/** --proxy-addr's help: where the default comes from. */
export const PROXY_ADDR_HELP = `the daemon's proxy for --mirror (default: the proxy of a running 'damselfly up' found via ${UP_DIR}/${UP_ENDPOINT_FILE} here or in a parent directory, else ${DEFAULT_PROXY_ADDR})`;

/** The one place the default --proxy-addr is decided: the proxy of a running `damselfly up` found from cwd, else 4001. */
export function defaultProxyAddr(startDir?: string): string {
  return readUpEndpoint(startDir)?.proxy ?? DEFAULT_PROXY_ADDR;
}

export interface ImageRef {
  /** host[:port], as containerd sends it in `ns`. */
  registry: string;
  repository: string;
  /** Tag or digest. */
  reference: string;
}

/** `host[:port]/repo/path[:tag|@digest]`; a name without a registry host is Docker Hub's, as for docker pull. */
export function parseImageRef(ref: string): ImageRef {
  const m = /^([^@]+?)(?::([\w][\w.-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?$/.exec(ref.trim());
  const name = m?.[1];
  if (!m || !name || !/^[a-z0-9._:[\]-]+(\/[a-z0-9._-]+)*$/.test(name)) throw new Error(`"${ref}" is not an image reference (expected host[:port]/repo[:tag|@sha256:digest])`);
  const slash = name.indexOf("/");
  const first = slash < 0 ? "" : name.slice(0, slash);
  // Docker's rule: the first component is a registry host when it has a dot or port, or is localhost.
  const hasHost = first !== "" && (first.includes(".") || first.includes(":") || first === "localhost");
  const registry = hasHost ? first : "docker.io";
  let repository = hasHost ? name.slice(slash + 1) : name;
  if (registry === "docker.io" && !repository.includes("/")) repository = `library/${repository}`;
  return { registry, repository, reference: m[3] ?? m[2] ?? "latest" };
}

export interface MirrorFetch {
  what: "manifest" | "index" | "config" | "layer";
  /** What was asked for: `manifests/<ref>` or `blobs/<digest>`. */
  path: string;
  /** 0 when the proxy gave no answer. */
  status: number;
  bytes: number;
  /** The swarm served it (the proxy's X-Dragonfly-Task-ID). */
  swarm: boolean;
  taskId?: string;
  /** sha256 of the body equals the digest asked for (or the registry's Docker-Content-Digest); absent when there is nothing to compare. */
  digestOk?: boolean;
  /** X-Dragonfly-Error-Type: "proxy" and "dfdaemon" are the proxy's own refusals, "backend" the registry's answer. */
  errorType?: string;
  error?: string;
}

export interface MirrorReport {
  image: string;
  registry: string;
  repository: string;
  reference: string;
  proxy: string;
  fetches: MirrorFetch[];
  /** What to fix, first problem first; empty when ok. */
  problems: string[];
  ok: boolean;
}

export interface MirrorCheckOptions {
  image: string;
  proxyAddr: string;
  /** Per request, body included. */
  timeoutMs?: number;
}

interface Fetched {
  fetch: MirrorFetch;
  body?: Buffer;
  contentDigest?: string;
}

interface Descriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
  platform?: { os?: string; architecture?: string };
}

function sha256Digest(): { update(b: Buffer): void; digest(): string } {
  const h = createHash("sha256");
  return { update: (b) => h.update(b), digest: () => `sha256:${h.digest("hex")}` };
}

/** One GET through the mirror; blobs are hashed as they stream, only manifests are kept. */
async function viaMirror(proxy: URL, proxyAuth: string | undefined, ref: ImageRef, what: MirrorFetch["what"], path: string, expected: string | undefined, timeoutMs: number): Promise<Fetched> {
  const url = `${proxy.origin}${proxy.pathname.replace(/\/+$/, "")}/v2/${ref.repository}/${path}?ns=${encodeURIComponent(ref.registry)}`;
  const fetch: MirrorFetch = { what, path, status: 0, bytes: 0, swarm: false };
  const headers: Record<string, string> = what === "manifest" || what === "index" ? { accept: MANIFEST_ACCEPT } : {};
  if (proxyAuth) headers["proxy-authorization"] = proxyAuth;
  try {
    const r = await request(url, { method: "GET", headers, signal: AbortSignal.timeout(timeoutMs) });
    fetch.status = r.statusCode;
    const header = (k: string) => (typeof r.headers[k] === "string" ? r.headers[k] : undefined);
    fetch.taskId = header("x-dragonfly-task-id");
    fetch.swarm = fetch.taskId !== undefined;
    fetch.errorType = header("x-dragonfly-error-type");
    const keep = r.statusCode !== 200 || what === "manifest" || what === "index";
    const chunks: Buffer[] = [];
    const hash = sha256Digest();
    for await (const chunk of r.body as AsyncIterable<Buffer>) {
      fetch.bytes += chunk.length;
      hash.update(chunk);
      if (keep && fetch.bytes <= MAX_MANIFEST_BYTES) chunks.push(chunk);
    }
    const body = Buffer.concat(chunks);
    if (r.statusCode !== 200) {
      fetch.error = body.toString("utf8").trim().split("\n")[0]?.slice(0, 500) || `answered ${r.statusCode}`;
      return { fetch };
    }
    const contentDigest = header("docker-content-digest");
    const want = expected ?? contentDigest;
    if (want?.startsWith("sha256:")) fetch.digestOk = hash.digest() === want;
    return { fetch, body, ...(contentDigest ? { contentDigest } : {}) };
  } catch (e) {
    fetch.error = e instanceof Error ? `${e.message}${e.cause instanceof Error ? ` (${e.cause.message})` : ""}` : String(e);
    return { fetch };
  }
}

/** The first linux/amd64 manifest of an index, else its first entry. */
function pickManifest(all: Descriptor[]): Descriptor | undefined {
  return all.find((d) => d.platform?.os === "linux" && d.platform.architecture === "amd64") ?? all[0];
}

/** Why a fetch failed, and what the operator should do about it. */
function problemOf(f: MirrorFetch, proxy: string, ref: ImageRef): string | undefined {
  const name = f.what === "manifest" || f.what === "index" ? `the ${f.what}` : `the ${f.what} blob ${f.path.slice("blobs/".length)}`;
  if (f.status === 0) return `cannot reach the proxy at ${proxy} for ${name}: ${f.error ?? "no answer"}; is dfdaemon running with a proxy: section (port 4001 by default)? Otherwise pass --proxy-addr`;
  if (f.status !== 200) {
    const own = f.errorType === "proxy" || f.errorType === "dfdaemon";
    const hint = f.status === 401 ? " (the doctor pulls anonymously: check a public image, or that the runtime's credentials reach the registry)" : "";
    return own
      ? `the mirror refused ${name} with ${f.status}: ${f.error ?? ""}; containerd would pull from ${ref.registry} directly, bypassing the swarm`
      : `${ref.registry} answered ${f.status} for ${name} through the mirror: ${f.error ?? ""}${hint}`;
  }
  if (f.digestOk === false) return `${name} does not match its digest: the bytes served through the mirror are wrong`;
  if ((f.what === "config" || f.what === "layer") && !f.swarm) return `${name} was not served by the swarm (no X-Dragonfly-Task-ID): check that proxy.rules matches blobs/sha256.* (the default) for this registry`;
  return undefined;
}

/** Pulls the manifest, config blob and smallest layer of `image` through the mirror at `proxyAddr`. */
export async function checkMirror(o: MirrorCheckOptions): Promise<MirrorReport> {
  const ref = parseImageRef(o.image);
  let proxy: URL;
  try {
    proxy = new URL(o.proxyAddr);
  } catch {
    throw new Error(`--proxy-addr "${o.proxyAddr}" is not a URL (expected e.g. ${DEFAULT_PROXY_ADDR})`);
  }
  if (proxy.protocol !== "http:" && proxy.protocol !== "https:") throw new Error(`--proxy-addr "${o.proxyAddr}": expected an http(s) URL`);
  // Credentials in the address are proxy.server.basicAuth's; they go in Proxy-Authorization.
  const proxyAuth = proxy.username ? `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString("base64")}` : undefined;
  proxy.username = "";
  proxy.password = "";
  const shown = proxy.href.replace(/\/$/, "");
  const timeoutMs = o.timeoutMs ?? 120_000;
  const report: MirrorReport = { image: o.image, ...ref, proxy: shown, fetches: [], problems: [], ok: false };
  const run = async (what: MirrorFetch["what"], path: string, expected?: string) => {
    const r = await viaMirror(proxy, proxyAuth, ref, what, path, expected, timeoutMs);
    report.fetches.push(r.fetch);
    const problem = problemOf(r.fetch, shown, ref);
    if (problem) report.problems.push(problem);
    return problem ? undefined : r;
  };
  const finish = () => ({ ...report, ok: report.problems.length === 0 });

  const digestRef = ref.reference.startsWith("sha256:") ? ref.reference : undefined;
  let top = await run("manifest", `manifests/${ref.reference}`, digestRef);
  let manifest = parseJson(top?.body);
  if (top && !manifest) report.problems.push(`the manifest of ${o.image} is not JSON`);
  if (!top || !manifest) return finish();
  if (Array.isArray(manifest.manifests)) {
    // An index: the doctor pulls what an amd64 Linux host would.
    top.fetch.what = "index";
    const chosen = pickManifest(manifest.manifests as Descriptor[]);
    if (!chosen?.digest) {
      report.problems.push(`the index of ${o.image} lists no manifest`);
      return finish();
    }
    top = await run("manifest", `manifests/${chosen.digest}`, chosen.digest);
    manifest = parseJson(top?.body);
    if (top && !manifest) report.problems.push(`manifest ${chosen.digest} is not JSON`);
    if (!top || !manifest) return finish();
  }
  const config = manifest.config as Descriptor | undefined;
  const layers = ((manifest.layers as Descriptor[] | undefined) ?? []).filter((l) => l.digest);
  if (!config?.digest) {
    report.problems.push(`the manifest of ${o.image} has no config blob (schema 1 manifests are not supported)`);
    return finish();
  }
  await run("config", `blobs/${config.digest}`, config.digest);
  const smallest = layers.reduce<Descriptor | undefined>((min, l) => (min === undefined || (l.size ?? Infinity) < (min.size ?? Infinity) ? l : min), undefined);
  if (smallest?.digest) await run("layer", `blobs/${smallest.digest}`, smallest.digest);
  return finish();
}

function parseJson(body: Buffer | undefined): Record<string, unknown> | undefined {
  if (!body) return undefined;
  try {
    const v: unknown = JSON.parse(body.toString("utf8"));
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function formatMirrorReport(r: MirrorReport): string {
  const lines = [`mirror   ${r.proxy} (registry ${r.registry}, ${r.repository}:${r.reference})`];
  for (const f of r.fetches) {
    const digest = f.digestOk === undefined ? "" : f.digestOk ? "  digest ok" : "  DIGEST MISMATCH";
    const swarm = f.what === "config" || f.what === "layer" ? `  swarm ${f.swarm ? `yes (task ${f.taskId?.slice(0, 12)}…)` : "NO"}` : "";
    lines.push(`${f.what.padEnd(9)}${f.status === 0 ? "---" : f.status}  ${f.bytes} B${swarm}${digest}  ${f.path}${f.error ? `: ${f.error}` : ""}`);
  }
  if (r.ok) lines.push(`doctor: the mirror serves ${r.image} through the swarm`);
  else for (const p of r.problems) lines.push(`doctor: FAIL: ${p}`);
  return lines.join("\n");
}
