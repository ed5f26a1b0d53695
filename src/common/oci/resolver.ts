// Resolving an image manifest URL into the blob URLs a preheat warms: follows the registry's
// bearer-token flow (or basic auth), picks the platform from manifest lists / OCI indexes, and
// returns config + layer blob URLs with the Authorization header seed peers must send. Every
// connection goes through the SSRF-checked dispatcher, redirects included. One resolver serves
// the manager's image preheat job and the scheduler's PreheatImage / StatImage, so both turn an
// image into the same blob URLs (and so the same task ids).
import { interceptors, request, type Dispatcher } from "undici";

/** Every manifest media type a pull accepts (indexes first, so a platform can be chosen). */
export const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");
/** A manifest bigger than this is not one. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** `/v2/{repository}/manifests/{tag or digest}`: the path of a manifest URL. */
export const MANIFEST_PATH = /^\/v2\/(.+)\/manifests\/([^/]+)$/;

/** Whether `url` parses and its path names a manifest. */
export function isManifestUrl(url: string): boolean {
  try {
    return MANIFEST_PATH.test(new URL(url).pathname);
  } catch {
    return false;
  }
}

export class ImageResolveError extends Error {
  override name = "ImageResolveError";
}

export interface ImageAuth {
  headers: Record<string, string>;
  username: string;
  password: string;
}

export interface ResolvedImage {
  /** Config first, then layers, as `{scheme}://{registry}/v2/{repo}/blobs/{digest}`. */
  blobUrls: string[];
  /** Headers to send with every blob request (Authorization when the registry needs it). */
  headers: Record<string, string>;
}

interface Descriptor {
  digest: string;
  mediaType?: string;
  platform?: { os?: string; architecture?: string; variant?: string };
}

/** Go's GOARCH for this process's platform, the default when none is given (as Dragonfly). */
export function defaultPlatform(): string {
  const arch = ({ x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x" } as Record<string, string>)[process.arch] ?? process.arch;
  return `linux/${arch}`;
}

async function readCapped(body: Dispatcher.ResponseData["body"], limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      body.destroy();
      throw new ImageResolveError(`registry response larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Parses `Bearer realm="…",service="…",scope="…"`. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const m = /^\s*(\w+)\s*(.*)$/.exec(header);
  const params: Record<string, string> = {};
  for (const p of (m?.[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)) params[(p[1] ?? "").toLowerCase()] = p[2] ?? "";
  return { scheme: (m?.[1] ?? "").toLowerCase(), params };
}

export class ImageResolver {
  private readonly dispatcher: Dispatcher;

  constructor(
    private readonly base: Dispatcher,
    private readonly timeoutMs = 30_000,
  ) {
    this.dispatcher = base.compose(interceptors.redirect({ maxRedirections: 5 }));
  }

  /** Closes the connections to registries (the dispatcher given to the constructor). */
  close(): Promise<void> {
    return this.base.close();
  }

  private async get(url: string, headers: Record<string, string>) {
    return request(url, { method: "GET", headers, dispatcher: this.dispatcher, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs });
  }

  /** Turns a 401 challenge into an Authorization header value, or undefined if it cannot. */
  private async authorize(challenge: string, auth: ImageAuth): Promise<string | undefined> {
    const { scheme, params } = parseChallenge(challenge);
    const basic = auth.username || auth.password ? `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}` : undefined;
    const given = Object.entries(auth.headers).find(([k]) => k.toLowerCase() === "authorization")?.[1];
    if (scheme === "basic") return basic ?? given;
    if (scheme !== "bearer" || !params.realm) return undefined;
    const realm = new URL(params.realm);
    if (params.service) realm.searchParams.set("service", params.service);
    if (params.scope) realm.searchParams.set("scope", params.scope);
    // Harbor hands its credentials over as a Basic Authorization header; use them for the token.
    const credential = basic ?? (given?.toLowerCase().startsWith("basic ") ? given : undefined);
    const res = await this.get(realm.href, credential ? { authorization: credential } : {});
    const text = await readCapped(res.body, MAX_MANIFEST_BYTES);
    if (res.statusCode !== 200) throw new ImageResolveError(`token endpoint ${realm.origin}${realm.pathname} answered ${res.statusCode}`);
    const body = JSON.parse(text) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new ImageResolveError("token endpoint returned no token");
    return `Bearer ${token}`;
  }

  private async fetchManifest(url: string, headers: Record<string, string>, auth: ImageAuth): Promise<{ json: Record<string, unknown>; mediaType: string; headers: Record<string, string> }> {
    let h: Record<string, string> = { ...headers, accept: MANIFEST_ACCEPT };
    let res = await this.get(url, h);
    if (res.statusCode === 401) {
      const challenge = res.headers["www-authenticate"];
      await res.body.dump();
      const value = typeof challenge === "string" ? await this.authorize(challenge, auth) : undefined;
      if (!value) throw new ImageResolveError(`registry requires authentication for ${url}`);
      h = { ...Object.fromEntries(Object.entries(h).filter(([k]) => k.toLowerCase() !== "authorization")), authorization: value };
      res = await this.get(url, h);
    }
    const text = await readCapped(res.body, MAX_MANIFEST_BYTES);
    if (res.statusCode !== 200) throw new ImageResolveError(`manifest ${url} answered ${res.statusCode}`);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new ImageResolveError(`manifest ${url} is not JSON`);
    }
    const ct = res.headers["content-type"];
    const mediaType = (typeof json.mediaType === "string" ? json.mediaType : undefined) ?? (typeof ct === "string" ? ct.split(";")[0] ?? "" : "");
    const { accept: _accept, ...rest } = h;
    return { json, mediaType, headers: rest };
  }

  async resolve(manifestUrl: string, auth: ImageAuth, platform = defaultPlatform()): Promise<ResolvedImage> {
    const u = new URL(manifestUrl);
    const m = MANIFEST_PATH.exec(u.pathname);
    if (!m) throw new ImageResolveError(`not a manifest URL: ${manifestUrl}`);
    const repo = m[1] ?? "";
    const base = `${u.protocol}//${u.host}/v2/${repo}`;
    const first = await this.fetchManifest(manifestUrl, auth.headers, auth);
    let { json, headers } = first;
    if (Array.isArray(json.manifests)) {
      const [os, arch, variant] = platform.split("/");
      const list = json.manifests as Descriptor[];
      const pick =
        list.find((d) => d.platform?.os === os && d.platform?.architecture === arch && (variant === undefined || d.platform?.variant === variant)) ??
        (variant === undefined ? undefined : list.find((d) => d.platform?.os === os && d.platform?.architecture === arch));
      if (!pick) throw new ImageResolveError(`no manifest for platform ${platform} in ${manifestUrl} (${first.mediaType})`);
      ({ json, headers } = await this.fetchManifest(`${base}/manifests/${pick.digest}`, headers, auth));
    }
    const config = json.config as Descriptor | undefined;
    const layers = (json.layers as Descriptor[] | undefined) ?? [];
    if (!config?.digest) throw new ImageResolveError(`manifest ${manifestUrl} has no config`);
    const digests = [config.digest, ...layers.map((l) => l.digest)];
    for (const d of digests) if (!/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(d)) throw new ImageResolveError(`invalid digest "${d}" in manifest`);
    const auth2 = Object.entries(headers).find(([k]) => k.toLowerCase() === "authorization");
    return {
      blobUrls: digests.map((d) => `${base}/blobs/${d}`),
      headers: { ...Object.fromEntries(Object.entries(auth.headers).filter(([k]) => k.toLowerCase() !== "authorization")), ...(auth2 ? { Authorization: auth2[1] } : {}) },
    };
  }
}
