// Model hub back-to-source (issue 23): hf:// (Hugging Face) and modelscope:// URLs in
// Dragonfly's forms (common/model-hub.ts), each hub's API in a file of its own
// (hugging-face.ts, model-scope.ts); what they share is here.
//
// A hub serves a file of a repository at a revision over plain HTTP (`…/resolve/<revision>/<path>`),
// so the bytes move through the http backend: ranged GETs with the download's token as
// `Authorization: Bearer`, redirects followed (Hugging Face sends large files to a CDN, and the
// token stays behind: http.ts drops credentials on a redirect to another origin), retries,
// and the native fast path for plain-http hubs. The token, the revision and the hub's base URL
// travel with each download (Download.hugging_face / model_scope), so the backend registered
// by scheme is a factory: `forDownload` binds it to one download's options.
//
// Versions: a task is one version of the file (pin.ts). The stat's answer fixes its ETag, sent
// as If-Match with every ranged read, so a revision (a branch) that moves to other content
// mid-download fails the task instead of mixing two versions. Where the hub tells the commit a
// revision resolved to (Hugging Face's X-Repo-Commit), later reads of the same bound download
// ask for that commit, which cannot move.
//
// Errors name the hub URL the user gave (never the token), with the hub's reason: an unknown
// repository, a revision that does not exist, no such file, or a refused token.
import type { Download } from "../../gen/common/v2/common.js";
import { endpointRule } from "../../common/object-storage.js";
import { DEFAULT_REVISION, encodePath, REPO_COMMIT_HEADER, hubFileUrl, parseHubUrl, type HubUrl, type HubUrlWrong, type ModelHubScheme } from "../../common/model-hub.js";
import { HttpBackend, type HttpBackendOptions } from "./http.js";
import { OriginChangedError } from "./pin.js";
import { BackendError, parseBackendUrl, type Backend, type BackendRequest, type ByteRange, type GetResult, type Listing, type OriginRoute, type StatResult } from "./types.js";
import type { NativePieceInfo, NativeTaskStore } from "../../native/index.js";

/** A backend error's reason without the URL it starts with (the http backend names the hub URL; callers name the hf:// one). */
function withoutUrl(message: string): string {
  return message.replace(/^\S+: /, "");
}

/** One download's options for a hub, from Download.hugging_face / model_scope. */
export interface HubOptions {
  token?: string | undefined;
  revision: string;
  baseUrl?: string | undefined;
}

/** A file of a repository listing, its path relative to the repository's root. */
export interface HubFile {
  path: string;
  size: number;
}

/** What a hub's API module gets to make its requests: JSON over the bound http backend, errors already explained. */
export interface HubCall {
  /** The hub's base URL, without a trailing "/". */
  base: string;
  revision: string;
  repo: HubUrl;
  /** GETs `url` on the hub and parses its JSON; a refusal is a BackendError with the hub's reason. */
  json(url: string): Promise<{ body: unknown; headers: Record<string, string> }>;
}

/** One hub's API: its URLs, its listing, and how its refusals read. */
export interface HubApi {
  scheme: ModelHubScheme;
  /** The hub's name in messages. */
  name: string;
  /** dfget's flag prefix for this hub's options (`--hf`, `--ms`). */
  flag: string;
  /** The download's options for this hub. */
  optionsOf(d: Download): HubOptions | undefined;
  /** The repository's place on the hub, below the base URL (`[datasets/]<owner>/<repo>`): a file is at `<base>/<repoPath>/resolve/<revision>/<path>`. */
  repoPath(repo: HubUrl): string;
  /** Every file of the repository at the revision (below `repo.path` when set), and the commit the revision is at when the hub says. */
  list(call: HubCall): Promise<{ files: HubFile[]; commit?: string | undefined }>;
  /** The commit a file answer was served from (a pin that cannot move), when the hub says. */
  commitOf?(headers: Record<string, string>): string | undefined;
  /** The hub's own explanation of a refusal, from its answer's status and headers; undefined when it gives none. */
  explain(status: number | undefined, headers: Record<string, string>, call: HubCall): string | undefined;
}

export interface ModelHubBackendOptions {
  http: HttpBackendOptions;
  /** The hub's base URL when a download names none (backend.huggingFace.endpoint / backend.modelScope.endpoint). */
  endpoint: string;
}

/** Where a hub serves a file of a repository at a revision (or commit): both hubs' resolve route. */
export function resolveUrl(hub: HubApi, base: string, repo: HubUrl, revision: string, path: string): string {
  return `${base}/${hub.repoPath(repo)}/resolve/${encodeURIComponent(revision)}/${encodePath(path)}`;
}

/** A repository of more files than this is refused rather than held in memory and answered in one message. */
const MAX_LISTED_FILES = 100_000;
/** An API answer larger than this is not a listing we can use. */
const MAX_JSON_BYTES = 64 << 20;

const URL_WRONG: Record<HubUrlWrong, (url: string, hub: HubApi) => string> = {
  "not-hub": (url, hub) => `${url}: not a ${hub.scheme}:// URL`,
  credentials: (_url, hub) => `${hub.scheme}:// URL: credentials do not belong in the URL; pass the token with dfget ${hub.flag}-token`,
  query: (url, hub) => `${url}: a ${hub.scheme}:// URL has no query; pass the revision with dfget ${hub.flag}-revision`,
  "no-repo": (url, hub) => `${url}: no repository: expected ${hub.scheme}://[datasets/]<owner>/<repo>[/<path>]`,
  encoding: (url) => `${url}: the path is not valid percent-encoding`,
  segment: (url) => `${url}: the path has an empty, "." or ".." segment (or an encoded "/")`,
};

export class ModelHubBackend implements Backend {
  readonly schemes: readonly string[];
  readonly http: HttpBackend;

  constructor(
    readonly hub: HubApi,
    private readonly options: ModelHubBackendOptions,
  ) {
    this.schemes = [hub.scheme];
    this.http = new HttpBackend(options.http);
  }

  forDownload(download: Download): Backend {
    return new BoundHub(this, this.hub.optionsOf(download));
  }

  get endpoint(): string {
    return this.options.endpoint;
  }

  stat(req: BackendRequest): Promise<StatResult> {
    return new BoundHub(this, undefined).stat(req);
  }

  get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult> {
    return new BoundHub(this, undefined).get(req);
  }

  async close(): Promise<void> {
    await this.http.close();
  }
}

/** The hub backend bound to one download's options. */
class BoundHub implements Backend {
  readonly schemes: readonly string[];
  private readonly hub: HubApi;
  private readonly revision: string;
  /** The commit each file's revision resolved to at its stat: later reads ask for it. */
  private readonly commits = new Map<string, string>();

  constructor(
    private readonly parent: ModelHubBackend,
    private readonly opts: HubOptions | undefined,
  ) {
    this.hub = parent.hub;
    this.schemes = parent.schemes;
    this.revision = opts?.revision || DEFAULT_REVISION[this.hub.scheme];
  }

  /** The repository and base URL of `url`, after the URL's and the options' checks (400 for bad input). */
  private target(url: string): { repo: HubUrl; base: string } {
    const parsed = parseHubUrl(parseBackendUrl(url));
    if (!parsed.ok) throw new BackendError(URL_WRONG[parsed.wrong](url, this.hub), 400);
    const base = this.opts?.baseUrl || this.parent.endpoint;
    const checked = endpointRule(base);
    if (!checked.ok) throw new BackendError(`${url}: invalid ${this.hub.name} base URL (${this.hub.flag}-base-url): expected http(s)://host[:port][/path] without credentials`, 400);
    return { repo: parsed.value, base: base.replace(/\/+$/, "") };
  }

  /** The request headers with the token, when the download has one (a caller's own Authorization stays otherwise). */
  private headers(headers: Record<string, string>): Record<string, string> {
    if (!this.opts?.token) return headers;
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() !== "authorization") out[k] = v;
    out.authorization = `Bearer ${this.opts.token}`;
    return out;
  }

  private call(repo: HubUrl, base: string, signal: AbortSignal | undefined, headers: Record<string, string>): HubCall {
    const call: HubCall = {
      base,
      revision: this.revision,
      repo,
      json: async (apiUrl) => {
        let res: GetResult;
        try {
          res = await this.parent.http.get({ url: apiUrl, headers: { ...this.headers(headers), accept: "application/json" }, signal });
        } catch (e) {
          throw this.refusal(e, call);
        }
        let text = "";
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          text += chunk.toString("utf8");
          if (text.length > MAX_JSON_BYTES) throw new BackendError(`the ${this.hub.name} API answered more than ${MAX_JSON_BYTES} bytes`, 502);
        }
        try {
          return { body: JSON.parse(text) as unknown, headers: res.headers };
        } catch {
          throw new BackendError(`the ${this.hub.name} API did not answer JSON`, 502);
        }
      },
    };
    return call;
  }

  /** A refusal as the hub's reason (without the URL; the caller names it): the hub's own words, or what its status means. */
  private refusal(e: unknown, call: HubCall): BackendError {
    if (e instanceof OriginChangedError || !(e instanceof BackendError)) return e as BackendError;
    const status = e.statusCode;
    if (status === undefined) return new BackendError(`cannot reach ${call.base}: ${withoutUrl(e.message)}`, undefined, e.headers, e.temporary);
    const own = this.hub.explain(status, e.headers, call);
    if (own) return new BackendError(own, status, e.headers, false);
    const flag = `${this.hub.flag}-token`;
    if (status === 401) return new BackendError(this.opts?.token ? `the hub refused the token (401 Unauthorized)` : `the hub asks for a token (401 Unauthorized): pass one with ${flag}`, 401, e.headers);
    if (status === 403) return new BackendError(`access denied (403 Forbidden)${this.opts?.token ? "" : `: pass a token with ${flag}`}`, 403, e.headers);
    if (status === 404) return new BackendError(`repository ${call.repo.repoId} or its revision "${call.revision}" not found (404)`, 404, e.headers);
    return new BackendError(`the hub answered ${status}`, status, e.headers, e.temporary);
  }

  /** `e` as the failure of `url`: prefixed with it, the hub's reason kept; a pin mismatch as it is. */
  private named(url: string, e: unknown): BackendError {
    if (e instanceof OriginChangedError) return new OriginChangedError(`${url}: ${withoutUrl(e.message)}`, e.statusCode, e.headers, false);
    const b = e instanceof BackendError ? e : new BackendError(String(e), undefined);
    return new BackendError(`${url}: ${b.message}`, b.statusCode, b.headers, b.temporary);
  }

  /**
   * Why a file request was refused. A 404 or 401 that the hub did not explain is checked
   * against the revision's listing: a listing that fails says what is missing (repository,
   * revision, token), one that succeeds means the file is not in that revision.
   */
  private async fileRefusal(e: unknown, call: HubCall, path: string): Promise<BackendError> {
    const r = this.refusal(e, call);
    if (!(e instanceof BackendError) || r instanceof OriginChangedError) return r;
    if (this.hub.explain(e.statusCode, e.headers, call) !== undefined || (e.statusCode !== 404 && e.statusCode !== 401)) return r;
    try {
      await this.hub.list(call);
    } catch (listed) {
      return listed instanceof BackendError ? listed : r;
    }
    return e.statusCode === 404 ? new BackendError(`no file "${path}" in ${call.repo.repoId} at revision "${call.revision}" (404)`, 404, e.headers) : r;
  }

  /** The hub's URL of the file `url` names, at the commit learned from its stat when there is one. */
  private file(url: string, headers: Record<string, string>, signal: AbortSignal | undefined): { httpUrl: string; call: HubCall; path: string } {
    const { repo, base } = this.target(url);
    if (repo.path === undefined) throw new BackendError(`${url}: names a repository, not a file; download a whole repository with dfget --recursive`, 400);
    const call = this.call(repo, base, signal, headers);
    return { httpUrl: resolveUrl(this.hub, base, repo, this.commits.get(url) ?? this.revision, repo.path), call, path: repo.path };
  }

  async stat(req: BackendRequest): Promise<StatResult> {
    const { httpUrl, call, path } = this.file(req.url, req.headers, req.signal);
    let st: StatResult;
    try {
      st = await this.parent.http.stat({ ...req, url: httpUrl, headers: this.headers(req.headers) });
    } catch (e) {
      throw this.named(req.url, await this.fileRefusal(e, call, path));
    }
    const commit = this.hub.commitOf?.(st.headers);
    if (commit !== undefined && /^[0-9a-f]{40}$/.test(commit)) {
      this.commits.set(req.url, commit);
      // No redirect: the pieces are read from the commit's URL, which cannot move to other content.
      if (st.url === httpUrl) st = { ...st, url: resolveUrl(this.hub, call.base, call.repo, commit, path) };
    }
    return st;
  }

  async get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult> {
    const { httpUrl, call, path } = this.file(req.url, req.headers, req.signal);
    try {
      return await this.parent.http.get({ ...req, url: httpUrl, headers: this.headers(req.headers) });
    } catch (e) {
      throw this.named(req.url, await this.fileRefusal(e, call, path));
    }
  }

  async route(url: string, requested: string, headers: Record<string, string>, signal?: AbortSignal): Promise<OriginRoute | undefined> {
    // The token follows to `url` only if it is on the hub's own origin: http.ts compares it with
    // the hub's URL of the file (not the hf:// URL), as a redirect to a CDN drops it.
    const { httpUrl } = this.file(requested, headers, signal);
    let found: OriginRoute | undefined;
    try {
      found = await this.parent.http.route(url, httpUrl, this.headers(headers));
    } catch (e) {
      if (!(e instanceof BackendError)) throw e;
      throw this.named(requested, new BackendError(withoutUrl(e.message), e.statusCode, e.headers, e.temporary));
    }
    // Native piece errors name the URL the user asked for.
    return found && { ...found, url: requested };
  }

  fetchPiece(route: OriginRoute, store: NativeTaskStore, number: number, signal?: AbortSignal): Promise<NativePieceInfo> {
    return this.parent.http.fetchPiece(route, store, number, signal);
  }

  /**
   * Every file of the repository (or below the folder the URL names) at the download's revision,
   * each as its own hub URL. When the hub says the commit it listed, the answer names it
   * (X-Repo-Commit): dfget downloads each file at that commit, not at the revision, which may
   * move meanwhile.
   */
  async list(req: BackendRequest): Promise<Listing> {
    const { repo, base } = this.target(req.url);
    const call = this.call(repo, base, req.signal, req.headers);
    let listed: { files: HubFile[]; commit?: string | undefined };
    try {
      listed = await this.hub.list(call);
    } catch (e) {
      throw this.named(req.url, e);
    }
    const { files, commit } = listed;
    if (files.length > MAX_LISTED_FILES) throw new BackendError(`${req.url}: more than ${MAX_LISTED_FILES} files; list a folder of the repository`, 400);
    const below = repo.path === undefined ? "" : `${repo.path}/`;
    const entries = files.filter((f) => f.path.startsWith(below)).map((f) => ({ url: hubFileUrl(repo, f.path), contentLength: f.size, isDir: false }));
    return { entries, responseHeader: commit === undefined ? {} : { [REPO_COMMIT_HEADER]: commit } };
  }
}
