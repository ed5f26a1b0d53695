// modelscope:// back-to-source: the ModelScope hub's API, in the forms Dragonfly's client uses
// (dragonfly-client-backend model_scope.rs; model-hub.ts has what the hubs share).
//
// - A file: `<base>/<models|datasets>/<owner>/<repo>/resolve/<revision>/<path>`.
// - A repository's files: `<base>/api/v1/<models|datasets>/<owner>/<repo>/repo/files?Revision=<revision>&Recursive=true`,
//   answering `{"Code": 200, "Data": {"Files": [{"Path", "Type", "Size"}]}, "Message"}`; entries of
//   Type "tree" are folders. The API reports some failures in `Code` with an HTTP 200.
import type { Download } from "../../gen/common/v2/common.js";
import { encodePath, type HubUrl } from "../../common/model-hub.js";
import type { HubApi, HubCall, HubFile } from "./model-hub.js";
import { BackendError } from "./types.js";

function repoPath(repo: HubUrl): string {
  return `${repo.repoType}/${encodePath(repo.repoId)}`;
}

interface FilesAnswer {
  Code?: unknown;
  Message?: unknown;
  Data?: { Files?: Array<{ Path?: unknown; Type?: unknown; Size?: unknown }> | null } | null;
}

export const modelScope: HubApi = {
  scheme: "modelscope",
  name: "ModelScope",
  flag: "--ms",
  optionsOf: (d: Download) => d.modelScope,

  repoPath,

  async list(call: HubCall): Promise<{ files: HubFile[] }> {
    const url = `${call.base}/api/v1/${repoPath(call.repo)}/repo/files?Revision=${encodeURIComponent(call.revision)}&Recursive=true`;
    const body = (await call.json(url)).body as FilesAnswer;
    if (body.Code !== 200) {
      const said = typeof body.Message === "string" && body.Message !== "" ? `: ${body.Message}` : "";
      throw new BackendError(`the ModelScope API refused listing ${call.repo.repoId} at revision "${call.revision}" (Code ${String(body.Code)})${said}`, 404);
    }
    const files: HubFile[] = [];
    for (const f of body.Data?.Files ?? []) {
      if (f.Type === "tree" || typeof f.Path !== "string") continue;
      files.push({ path: f.Path, size: typeof f.Size === "number" ? f.Size : 0 });
    }
    return { files };
  },

  // ModelScope's refusals carry no machine-readable reason in their headers: the shared
  // wording (and, for a file, a look at the revision's listing) says what is missing.
  explain: () => undefined,
};
