// One interface for every back-to-source scheme (http/https now; object stores, HDFS, file,
// OCI, Maven, YUM plug in behind it). The pipeline only asks two things of a backend: how long
// is the content, and give me these bytes.
import type { Readable } from "node:stream";
import type { Download } from "../../gen/common/v2/common.js";
import type { NativePieceInfo, NativeTaskStore } from "../../native/index.js";
import type { OriginPin } from "./pin.js";

export interface BackendRequest {
  url: string;
  headers: Record<string, string>;
  signal?: AbortSignal | undefined;
  /**
   * The content version the answer must be of (pin.ts): sent as a precondition and compared
   * with the answer's validators; another version fails with OriginChangedError.
   */
  pin?: OriginPin | undefined;
}

export interface StatResult {
  /** Undefined when the origin does not say (chunked responses). */
  contentLength: number | undefined;
  statusCode: number;
  headers: Record<string, string>;
  /** The origin honours Range requests; otherwise the content must be read in one stream. */
  rangeSupported: boolean;
  /** Where the content was found, after redirects: piece requests go there directly. */
  url: string;
}

/**
 * Where the native core fetches pieces of a URL from: an address resolved (and checked against
 * the SSRF policy) on the TS side, so the native client never resolves names.
 */
export interface OriginRoute {
  /** `ip:port` (`[v6]:port`). */
  addr: string;
  /** Host header value. */
  host: string;
  /** Request target: path and query. */
  path: string;
  /** The URL the download asked for (errors name it, as the JS path's errors do). */
  url: string;
  /** Request headers for this URL (credentials dropped when a redirect left the requested origin). */
  headers: Record<string, string>;
  /** The content version every piece must be of (pin.ts); the native client checks it. */
  pin?: OriginPin | undefined;
}

export interface ByteRange {
  start: number;
  /** Number of bytes; the backend returns exactly this many or fails. */
  length: number;
}

export interface GetResult {
  statusCode: number;
  headers: Record<string, string>;
  body: Readable;
}

/** One entry below a directory URL, as dfdaemon.v2's ListTaskEntries answers it. */
export interface ListedEntry {
  /** The entry's own URL, as text: a download of it is a task of its own. */
  url: string;
  contentLength: number;
  isDir: boolean;
}

/** A directory's listing: its entries, and what the origin says of the listing as a whole (ListTaskEntriesResponse.response_header). */
export interface Listing {
  entries: ListedEntry[];
  responseHeader?: Record<string, string>;
}

export interface Backend {
  /** URL schemes this backend serves, without the colon. */
  readonly schemes: readonly string[];
  stat(req: BackendRequest): Promise<StatResult>;
  get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult>;
  /** Every entry below a directory URL (ListTaskEntries); backends without directories leave it out. */
  list?(req: BackendRequest): Promise<Listing>;
  /**
   * Native fast path, for backends whose bytes the native core can fetch itself: the route
   * for `url` (the stat's final URL; `requested` is the URL the user asked for), or undefined
   * when this URL must go through `get` (e.g. https).
   */
  route?(url: string, requested: string, headers: Record<string, string>, signal?: AbortSignal): Promise<OriginRoute | undefined>;
  /** Fetches one piece over `route` straight into the task's native store; fails with BackendError. */
  fetchPiece?(route: OriginRoute, store: NativeTaskStore, number: number, signal?: AbortSignal): Promise<NativePieceInfo>;
  /**
   * This backend bound to one download's options (object storage credentials travel with each
   * download, not with the daemon); backends without per-download options leave it out.
   */
  forDownload?(download: Download): Backend;
  close?(): Promise<void>;
}

/** `url` parsed, or refused as bad input (400) naming it. */
export function parseBackendUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new BackendError(`invalid URL: ${url}`, 400);
  }
}

/** An origin status worth asking again for: a timeout, throttling or a server error. */
export function isTemporaryStatus(code: number): boolean {
  return code === 408 || code === 429 || code >= 500;
}

/**
 * An origin failure, kept with the origin's status code and headers so that the scheduler
 * (DownloadPieceBackToSourceFailedRequest.response = Backend{…}) and the proxy can pass them on.
 */
export class BackendError extends Error {
  override name = "BackendError";
  constructor(
    message: string,
    readonly statusCode: number | undefined,
    readonly headers: Record<string, string> = {},
    /** Worth retrying: network errors, 408, 429, 5xx. */
    readonly temporary = false,
  ) {
    super(message);
  }
}
