// ListTaskEntries, shared by both dfdaemon services: the local socket's (dfget -r, with the
// local user's backends) and the upload service's (a manager's directory preheat asks a seed
// peer, as Dragonfly's manager does; with the SSRF-checked backends of remote requests).
// Listing is not a task: nothing is stored, and no scheduler is asked.
import type { sendUnaryData, ServerUnaryCall, ServiceError } from "@grpc/grpc-js";
import { errorMessage } from "../../common/errors.js";
import { durationToMs } from "../../common/grpc/duration.js";
import type { Logger } from "../../common/logger.js";
import { Download } from "../../gen/common/v2/common.js";
import type { ListTaskEntriesRequest, ListTaskEntriesResponse } from "../../gen/dfdaemon/v2/dfdaemon.js";
import { BackendError, type Backend, type BackendRegistry } from "../backend/index.js";
import { DownloadError } from "../task/manager.js";

/** A listing without a timeout of its own gives up after this long (a store that stopped answering). */
const LIST_TIMEOUT_MS = 5 * 60_000;

/** Lists the entries below the request's directory URL with the request's credentials. */
export async function listEntries(backends: BackendRegistry, r: ListTaskEntriesRequest): Promise<ListTaskEntriesResponse> {
  let backend: Backend;
  try {
    backend = backends.for(r.url, Download.fromPartial({ url: r.url, objectStorage: r.objectStorage, huggingFace: r.huggingFace, modelScope: r.modelScope, hdfs: r.hdfs, requestHeader: r.requestHeader }));
  } catch (e) {
    throw new DownloadError((e as Error).message, "invalid");
  }
  if (!backend.list) throw new DownloadError(`${r.url}: listing a directory is not supported for ${new URL(r.url).protocol}// URLs`, "invalid");
  const asked = durationToMs(r.timeout);
  const timeoutMs = asked > 0 ? asked : LIST_TIMEOUT_MS;
  try {
    const listing = await backend.list({ url: r.url, headers: r.requestHeader, signal: AbortSignal.timeout(timeoutMs) });
    return { contentLength: 0, responseHeader: listing.responseHeader ?? {}, entries: listing.entries };
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    throw new DownloadError(e.message, e.statusCode === 400 ? "invalid" : e.statusCode === 404 ? "not_found" : "backend", e);
  }
}

/** The unary handler over `listEntries`; failures are logged (the URL, never credentials) and mapped by `fail`. */
export function listTaskEntriesHandler(backends: BackendRegistry, log: Logger, fail: (e: unknown) => Partial<ServiceError>) {
  return (call: ServerUnaryCall<ListTaskEntriesRequest, ListTaskEntriesResponse>, cb: sendUnaryData<ListTaskEntriesResponse>): void => {
    const r = call.request;
    listEntries(backends, r).then(
      (res) => cb(null, res),
      (e: unknown) => {
        log.info({ url: r.url, err: errorMessage(e) }, "list task entries failed");
        cb(fail(e));
      },
    );
  };
}
