// The task id of a download request, by the same rules as Dragonfly's clients: explicit content,
// then the OCI blob digest (when enabled and the URL is a blob URL), then the URL-based hash.
import { blobDigestFromUrl, taskIdFromBlobUrl, taskIdFromContent, taskIdFromUrl } from "../../common/ids.js";
import type { Download } from "../../gen/common/v2/common.js";

export function taskIdOf(d: Download): string {
  if (d.contentForCalculatingTaskId) return taskIdFromContent(d.contentForCalculatingTaskId);
  if (d.enableTaskIdBasedBlobDigest && blobDigestFromUrl(d.url)) return taskIdFromBlobUrl(d.url);
  return taskIdFromUrl({
    url: d.url,
    tag: d.tag,
    application: d.application,
    revision: d.huggingFace?.revision ?? d.modelScope?.revision ?? d.openCsg?.revision,
    pieceLength: d.pieceLength,
    filteredQueryParams: d.filteredQueryParams,
  });
}
