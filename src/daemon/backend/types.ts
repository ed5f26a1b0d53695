// One interface for every back-to-source scheme (http/https now; object stores, HDFS, file,
// OCI, Maven, YUM plug in behind it). The pipeline only asks two things of a backend: how long
// is the content, and give me these bytes.
import type { Readable } from "node:stream";

export interface BackendRequest {
  url: string;
  headers: Record<string, string>;
  signal?: AbortSignal | undefined;
}

export interface StatResult {
  /** Undefined when the origin does not say (chunked responses). */
  contentLength: number | undefined;
  statusCode: number;
  headers: Record<string, string>;
  /** The origin honours Range requests; otherwise the content must be read in one stream. */
  rangeSupported: boolean;
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

export interface Backend {
  /** URL schemes this backend serves, without the colon. */
  readonly schemes: readonly string[];
  stat(req: BackendRequest): Promise<StatResult>;
  get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult>;
  close?(): Promise<void>;
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
