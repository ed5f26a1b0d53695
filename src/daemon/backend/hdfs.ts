// HDFS back-to-source through WebHDFS (issue 23): hdfs://namenode[:port]/path as Dragonfly's
// client reads it (hdfs-url.ts), with the delegation token Download.hdfs carries.
//
// - stat is GETFILESTATUS on the namenode.
// - A piece is OPEN with offset and length: the namenode answers 307 with a datanode's address
//   (as the namenode names it: the datanode's hostname or IP and its HTTP port), and the bytes
//   come from there. Only that one hop is followed, and only to http(s).
// - A directory is listed with LISTSTATUS_BATCH (the namenode's pages followed to the end),
//   every subdirectory below it too, for ListTaskEntries (dfget -r).
//
// WebHDFS has no preconditions, so the version pin (pin.ts) is checked by asking again: a task
// is pinned to a strong ETag made of the file's inode id, length and modification time from
// GETFILESTATUS, and every read is followed by another GETFILESTATUS before its last byte is
// handed over. HDFS never gives a new file an old inode id, so a file replaced (or appended to,
// or truncated) before or while a piece was read fails the task with OriginChangedError instead
// of mixing two versions. Errors name the hdfs:// URL and never the delegation token.
//
// Bytes go through undici here, not the native origin client: that client sends a Range
// header and wants a 206 with a Content-Range, while a datanode serves OPEN's offset and length
// from the query and answers 200 with just those bytes (and the namenode's redirect comes first).
import { Readable } from "node:stream";
import { Agent, request, type Dispatcher } from "undici";
import { errorMessage } from "../../common/errors.js";
import type { SsrfPolicy } from "../../common/ssrf.js";
import { VERSION } from "../../common/version.js";
import type { Download } from "../../gen/common/v2/common.js";
import { discard } from "./http.js";
import { HDFS_SCHEME, hdfsChildUrl, parseHdfsDirectoryUrl, parseHdfsFileUrl, webHdfsUrl, type HdfsUrl } from "./hdfs-url.js";
import { MAX_LISTED_OBJECTS } from "./object-storage.js";
import { originChanged } from "./pin.js";
import { BackendError, isTemporaryStatus, type Backend, type BackendRequest, type ByteRange, type GetResult, type ListedEntry, type Listing, type StatResult } from "./types.js";

export interface HdfsBackendOptions {
  /** The SSRF policy when a remote party chose the URL (seed trigger): namenode and datanodes alike. */
  ssrf?: SsrfPolicy | undefined;
}

/** What WebHDFS tells about a file or directory (FileStatus JSON). */
export interface HdfsFileStatus {
  type: "FILE" | "DIRECTORY" | "SYMLINK";
  length: number;
  /** Milliseconds since the epoch. */
  modificationTime: number;
  /** The inode id (Hadoop 2.4+): a replaced file is a new inode. */
  fileId?: number;
  /** The entry's name in a listing; empty for the path itself. */
  pathSuffix: string;
}

/** The version validator of a file: another inode, length or modification time is another version. */
export function hdfsEtag(st: HdfsFileStatus): string {
  return `"hdfs-${st.fileId ?? 0}-${st.length}-${st.modificationTime}"`;
}

function headersOf(st: HdfsFileStatus): Record<string, string> {
  return { etag: hdfsEtag(st), "last-modified": new Date(st.modificationTime).toUTCString(), "content-length": String(st.length) };
}

/** WebHDFS's statuses for a redirect to a datanode. */
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class HdfsBackend implements Backend {
  readonly schemes = [HDFS_SCHEME] as const;
  private readonly agent: Agent;

  constructor(options: HdfsBackendOptions = {}) {
    const agentOptions: Agent.Options = { keepAliveTimeout: 60_000, connections: 256, headersTimeout: 60_000, bodyTimeout: 360_000 };
    this.agent = options.ssrf ? options.ssrf.agent(agentOptions) : new Agent(agentOptions);
  }

  /** This backend for one download: its delegation token travels with it. */
  forDownload(download: Download): Backend {
    return new BoundHdfs(this.agent, download.hdfs?.delegationToken || undefined);
  }

  // Without a download's options (a caller that does not bind): no delegation token.
  stat(req: BackendRequest): Promise<StatResult> {
    return new BoundHdfs(this.agent, undefined).stat(req);
  }

  get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult> {
    return new BoundHdfs(this.agent, undefined).get(req);
  }

  list(req: BackendRequest): Promise<Listing> {
    return new BoundHdfs(this.agent, undefined).list(req);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** The backend bound to one download's delegation token. */
class BoundHdfs implements Backend {
  readonly schemes = [HDFS_SCHEME] as const;
  /** Per file URL: the GETFILESTATUS after reads in flight, and the one the reads that ended since wait for. */
  private readonly statusChecks = new Map<string, { inFlight: Promise<HdfsFileStatus> | undefined; next: Promise<HdfsFileStatus> | undefined }>();

  constructor(
    private readonly agent: Agent,
    private readonly token: string | undefined,
  ) {}

  async stat(req: BackendRequest): Promise<StatResult> {
    const h = parseHdfsFileUrl(req.url);
    const st = await this.fileStatus(req.url, h, req.signal);
    if (st.type === "DIRECTORY") throw new BackendError(`${req.url}: is a directory; download it with dfget --recursive`, 400);
    if (req.pin?.etag !== undefined && hdfsEtag(st) !== req.pin.etag) throw originChanged(req.url, `origin content changed: the task is pinned to ETag ${req.pin.etag}, the namenode now answers ETag ${hdfsEtag(st)}`, 200, headersOf(st));
    return { contentLength: st.length, statusCode: 200, headers: headersOf(st), rangeSupported: true, url: req.url };
  }

  async get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult> {
    const h = parseHdfsFileUrl(req.url);
    const { pin, range } = req;
    if (range && pin && range.start + range.length > pin.contentLength) throw new BackendError(`${req.url}: range ${range.start}+${range.length} is beyond its ${pin.contentLength} bytes`, 416);
    // One abort listener on the download's signal per read, whatever number of requests it
    // makes (GETFILESTATUS, OPEN, the datanode's GET, GETFILESTATUS again): the download's
    // concurrent pieces each made several on the one signal (MaxListenersExceededWarning).
    const read = new AbortController();
    const forward = (): void => read.abort(req.signal?.reason);
    if (req.signal?.aborted) forward();
    else req.signal?.addEventListener("abort", forward, { once: true });
    const release = (): void => req.signal?.removeEventListener("abort", forward);
    const signal = req.signal ? read.signal : undefined;
    try {
      // Without a pin the read is pinned to the version there now: one version per answer.
      let version = pin?.etag;
      let total = pin?.contentLength;
      if (version === undefined || total === undefined) {
        const st = await this.fileStatus(req.url, h, signal);
        if (st.type === "DIRECTORY") throw new BackendError(`${req.url}: is a directory; download it with dfget --recursive`, 400);
        if (pin && st.length !== pin.contentLength) throw originChanged(req.url, `origin content changed: it is now ${st.length} bytes long, the task is pinned to ${pin.contentLength}`, 200, headersOf(st));
        version = hdfsEtag(st);
        total = st.length;
      }
      const length = range ? range.length : total;
      const res = await this.open(req.url, webHdfsUrl(h, "OPEN", range ? { offset: range.start, length: range.length } : { offset: 0 }, this.token), signal);
      if (res.statusCode !== 200) {
        const reason = await this.refusal(res);
        // The pinned file is gone (deleted, or renamed away): another version, not a passing fault.
        if (pin && res.statusCode === 404) throw originChanged(req.url, `origin content changed: the task is pinned to ETag ${version}, WebHDFS answers: ${reason}`, 404, {});
        throw new BackendError(`${req.url}: ${reason}`, res.statusCode, {}, isTemporaryStatus(res.statusCode));
      }
      const pinned = version;
      const body = Readable.from(this.checked(req.url, h, res.body, pinned, length, signal, release));
      return { statusCode: range ? 206 : 200, headers: { etag: pinned, "content-length": String(length) }, body };
    } catch (e) {
      release();
      throw e;
    }
  }

  /**
   * The answer's bytes, then the file's status asked again before the last chunk is handed on:
   * bytes read while the file was replaced fail here instead of landing in a piece. A short
   * answer fails too (the datanode stopped early). `release` drops the read's abort listener.
   */
  private async *checked(url: string, h: HdfsUrl, body: Readable, version: string, length: number, signal: AbortSignal | undefined, release: () => void): AsyncGenerator<Buffer> {
    let held: Buffer | undefined;
    try {
      let got = 0;
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          if (held) yield held;
          got += chunk.length;
          held = chunk;
        }
      } catch (e) {
        throw this.unreached(url, e, signal, "the datanode");
      }
      if (got !== length) throw new BackendError(`${url}: the datanode sent ${got} of ${length} bytes`, 200, {}, true);
      const now = hdfsEtag(await this.statusAfterRead(url, h, signal));
      if (now !== version) throw originChanged(url, `origin content changed while it was read: ETag ${version} became ${now}`, 200, {});
    } finally {
      release();
    }
    if (held) yield held;
  }

  /**
   * The file's status asked after the caller's bytes were all read. The download's concurrent
   * pieces share the requests: one GETFILESTATUS in flight per file at a time, and every read
   * that ends while it is in flight waits for the next one, which all of them share (it starts
   * after their last bytes, so it vouches for each). One per namenode round trip instead of one
   * per piece.
   */
  private statusAfterRead(url: string, h: HdfsUrl, signal: AbortSignal | undefined): Promise<HdfsFileStatus> {
    let s = this.statusChecks.get(url);
    if (!s) this.statusChecks.set(url, (s = { inFlight: undefined, next: undefined }));
    const state = s;
    if (!state.inFlight) {
      state.inFlight = this.fileStatus(url, h, signal).finally(() => (state.inFlight = undefined));
      return state.inFlight;
    }
    // A request in flight may have started before this read's last byte: wait for the next one.
    state.next ??= state.inFlight
      .catch(() => undefined)
      .then(() => {
        state.next = undefined;
        return this.statusAfterRead(url, h, signal);
      });
    return state.next;
  }

  /** OPEN on the namenode, then on the datanode it redirects to. */
  private async open(url: string, target: string, signal: AbortSignal | undefined): Promise<Dispatcher.ResponseData> {
    const res = await this.call(url, target, signal, "the namenode");
    if (!REDIRECTS.has(res.statusCode)) return res;
    discard(res.body);
    const location = res.headers.location;
    const where = Array.isArray(location) ? location[0] : location;
    let next: URL;
    try {
      next = new URL(where ?? "", target);
    } catch {
      throw new BackendError(`${url}: the namenode redirected to an invalid datanode address ${JSON.stringify(this.scrub(where ?? ""))}`, res.statusCode);
    }
    if (!where || (next.protocol !== "http:" && next.protocol !== "https:")) throw new BackendError(`${url}: the namenode answered ${res.statusCode} without an http(s) datanode address`, res.statusCode);
    const dn = await this.call(url, next.href, signal, `the datanode ${next.host}`);
    if (REDIRECTS.has(dn.statusCode)) {
      discard(dn.body);
      throw new BackendError(`${url}: the datanode ${next.host} redirected again (${dn.statusCode})`, dn.statusCode);
    }
    return dn;
  }

  /**
   * The entries below a directory URL, each as its own hdfs:// URL, subdirectories included
   * (is_dir set, and listed in turn).
   */
  async list(req: BackendRequest): Promise<Listing> {
    const top = parseHdfsDirectoryUrl(req.url);
    const st = await this.fileStatus(req.url, top, req.signal);
    if (st.type !== "DIRECTORY") throw new BackendError(`${req.url}: is a file, not a directory`, 400);
    const out: ListedEntry[] = [];
    const dirs: Array<{ url: string; h: HdfsUrl }> = [{ url: req.url, h: top }];
    for (let d = dirs.shift(); d; d = dirs.shift()) {
      for await (const page of this.listPages(req.url, d.h, req.signal)) {
        for (const e of page) {
          // One segment each: anything else would name a path outside the directory.
          if (e.pathSuffix === "" || e.pathSuffix === "." || e.pathSuffix === ".." || e.pathSuffix.includes("/")) throw new BackendError(`${req.url}: the namenode listed an entry named ${JSON.stringify(e.pathSuffix)} in ${d.h.path}`, 502);
          const isDir = e.type === "DIRECTORY";
          const url = hdfsChildUrl(d.url, e.pathSuffix, isDir);
          out.push({ url, contentLength: isDir ? 0 : e.length, isDir });
          if (isDir) dirs.push({ url, h: { endpoint: d.h.endpoint, path: `${d.h.path}${e.pathSuffix}/` } });
        }
        if (out.length > MAX_LISTED_OBJECTS) throw new BackendError(`${req.url}: more than ${MAX_LISTED_OBJECTS} entries; list a narrower directory`, 400);
      }
    }
    return { entries: out };
  }

  /** One directory's entries, a page at a time (LISTSTATUS_BATCH with startAfter). */
  private async *listPages(url: string, h: HdfsUrl, signal: AbortSignal | undefined): AsyncGenerator<HdfsFileStatus[]> {
    let after: string | undefined;
    for (;;) {
      const params: Record<string, string | number> = after === undefined ? {} : { startAfter: after };
      // The page's size is the namenode's (dfs.ls.limit).
      const body = await this.json<{ DirectoryListing?: { partialListing?: { FileStatuses?: { FileStatus?: HdfsFileStatus[] } }; remainingEntries?: number } }>(url, webHdfsUrl(h, "LISTSTATUS_BATCH", params, this.token), signal);
      const page = body.DirectoryListing?.partialListing?.FileStatuses?.FileStatus;
      if (!page) throw new BackendError(`${url}: the namenode's LISTSTATUS_BATCH answer has no DirectoryListing`, 502);
      yield page;
      const last = page[page.length - 1];
      if (!body.DirectoryListing?.remainingEntries || !last) return;
      after = last.pathSuffix;
    }
  }

  private async fileStatus(url: string, h: HdfsUrl, signal: AbortSignal | undefined): Promise<HdfsFileStatus> {
    const body = await this.json<{ FileStatus?: HdfsFileStatus }>(url, webHdfsUrl(h, "GETFILESTATUS", {}, this.token), signal);
    const st = body.FileStatus;
    if (!st || typeof st.length !== "number" || typeof st.modificationTime !== "number") throw new BackendError(`${url}: the namenode's GETFILESTATUS answer has no FileStatus`, 502);
    return st;
  }

  /** A namenode call answered with JSON (200), or its refusal as a BackendError. */
  private async json<T>(url: string, target: string, signal: AbortSignal | undefined): Promise<T> {
    const res = await this.call(url, target, signal, "the namenode");
    if (res.statusCode !== 200) throw new BackendError(`${url}: ${await this.refusal(res)}`, res.statusCode, {}, isTemporaryStatus(res.statusCode));
    try {
      return (await res.body.json()) as T;
    } catch (e) {
      throw new BackendError(`${url}: the namenode's answer is not JSON: ${this.scrub(errorMessage(e))}`, 502, {}, true);
    }
  }

  private async call(url: string, target: string, signal: AbortSignal | undefined, who: string): Promise<Dispatcher.ResponseData> {
    try {
      return await request(target, { method: "GET", dispatcher: this.agent, signal, headers: { "user-agent": `damselfly/${VERSION}` } });
    } catch (e) {
      throw this.unreached(url, e, signal, who);
    }
  }

  /**
   * Why WebHDFS refused, in one line (the token scrubbed): its RemoteException's class and message
   * (`{"RemoteException":{"exception":"FileNotFoundException","message":"File does not exist: /x"}}`).
   */
  private async refusal(res: Dispatcher.ResponseData): Promise<string> {
    const text = await res.body.text().catch(() => "");
    let exception: string | undefined;
    let message: string | undefined;
    try {
      const j = JSON.parse(text) as { RemoteException?: { exception?: string; message?: string } };
      exception = j.RemoteException?.exception;
      message = j.RemoteException?.message?.split("\n")[0];
    } catch {
      // Not WebHDFS's JSON (a proxy's page): the status says it.
    }
    const status = res.statusCode;
    const said = message ? `: ${message}` : "";
    let reason: string;
    if (exception === "FileNotFoundException" || (status === 404 && !exception)) reason = "no such file or directory";
    else if (exception === "InvalidToken" || /token/i.test(exception ?? "")) reason = `the delegation token was refused (${exception})${said}`;
    else if (exception === "AccessControlException" || status === 403) reason = `permission denied${said}`;
    else if (status === 401) reason = `not authorized (a secured cluster wants a delegation token: --hdfs-delegation-token)${said}`;
    else reason = `WebHDFS answered ${status}${exception ? ` ${exception}` : ""}${said}`;
    return this.scrub(reason);
  }

  /** The namenode or a datanode not reached (or the download aborted): temporary unless aborted. */
  private unreached(url: string, e: unknown, signal: AbortSignal | undefined, who: string): BackendError {
    if (e instanceof BackendError) return e;
    if (signal?.aborted || (e as Error).name === "AbortError") return new BackendError(`${url}: aborted`, undefined, {}, false);
    const ssrf = (e as Error).name === "SsrfError";
    return new BackendError(`${url}: cannot reach ${who}: ${this.scrub(errorMessage(e))}`, undefined, {}, !ssrf);
  }

  /** A text without the delegation token. */
  private scrub(text: string): string {
    return this.token ? text.split(this.token).join("<redacted>") : text;
  }
}
