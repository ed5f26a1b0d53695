// hf:// back-to-source: the Hugging Face Hub's API (model-hub.ts has what the hubs share).
//
// - A file: `<base>/[datasets/|spaces/]<owner>/<repo>/resolve/<revision>/<path>`, as Dragonfly's
//   client and huggingface_hub fetch it; the answer carries X-Repo-Commit (the commit the
//   revision is at) and the file's ETag; the hub's refusals carry X-Error-Code (RepoNotFound,
//   RevisionNotFound, EntryNotFound, GatedRepo).
// - A repository's files: the revision is resolved to its commit
//   (`<base>/api/<type>/<owner>/<repo>/revision/<revision>`, answering `sha`), then that commit's
//   tree is listed (`<base>/api/<type>/<owner>/<repo>/tree/<commit>[/<folder>]?recursive=true`,
//   paginated by a Link rel="next" header), as huggingface_hub's snapshot_download does. Dragonfly's
//   client reads the `siblings` of `/api/<type>/<repo>?revision=` instead, whose entries carry no
//   size unless asked with blobs=true; the tree of one commit gives sizes, and a listing that
//   cannot change between its pages.
import type { Download } from "../../gen/common/v2/common.js";
import { encodePath, REPO_COMMIT_HEADER, type HubUrl } from "../../common/model-hub.js";
import type { HubApi, HubCall, HubFile } from "./model-hub.js";
import { BackendError } from "./types.js";

/** Pages of a tree listing followed at most (1000 entries a page on the public hub). */
const MAX_PAGES = 1000;

function repoPath(repo: HubUrl): string {
  return `${repo.repoType === "models" ? "" : `${repo.repoType}/`}${encodePath(repo.repoId)}`;
}

/** The `next` URL of a Link header (`<https://…>; rel="next"`), resolved against the request's URL. */
export function nextLink(link: string | undefined, from: string): string | undefined {
  for (const part of (link ?? "").split(",")) {
    const m = /<([^>]*)>\s*;.*\brel="?next"?/.exec(part);
    if (m?.[1] !== undefined) return new URL(m[1], from).href;
  }
  return undefined;
}

interface TreeEntry {
  type?: unknown;
  path?: unknown;
  size?: unknown;
  lfs?: { size?: unknown } | null;
}

export const huggingFace: HubApi = {
  scheme: "hf",
  name: "Hugging Face",
  flag: "--hf",
  optionsOf: (d: Download) => d.huggingFace,

  repoPath,

  commitOf: (headers) => headers[REPO_COMMIT_HEADER],

  async list(call: HubCall): Promise<{ files: HubFile[]; commit: string }> {
    const api = `${call.base}/api/${call.repo.repoType}/${encodePath(call.repo.repoId)}`;
    const info = (await call.json(`${api}/revision/${encodeURIComponent(call.revision)}`)).body as { sha?: unknown };
    if (typeof info.sha !== "string" || info.sha === "") throw new BackendError(`the hub did not tell the commit of revision "${call.revision}"`, 502);
    const folder = call.repo.path === undefined ? "" : `/${encodeURIComponent(call.repo.path)}`;
    let next: string | undefined = `${api}/tree/${encodeURIComponent(info.sha)}${folder}?recursive=true`;
    const files: HubFile[] = [];
    for (let pages = 0; next !== undefined; pages++) {
      if (pages >= MAX_PAGES) throw new BackendError(`the tree listing did not end after ${MAX_PAGES} pages`, 502);
      const page: { body: unknown; headers: Record<string, string> } = await call.json(next);
      if (!Array.isArray(page.body)) throw new BackendError("the hub's tree listing is not a list", 502);
      for (const e of page.body as TreeEntry[]) {
        if (e.type !== "file" || typeof e.path !== "string") continue;
        // An LFS file's size is the object's; `size` is the same on the hub today, the pointer's on older ones.
        const size = typeof e.lfs?.size === "number" ? e.lfs.size : typeof e.size === "number" ? e.size : 0;
        files.push({ path: e.path, size });
      }
      next = nextLink(page.headers.link, next);
    }
    return { files, commit: info.sha };
  },

  explain(status, headers, call) {
    const repo = call.repo.repoId;
    switch (headers["x-error-code"]) {
      case "RepoNotFound":
        return `repository ${repo} not found on ${call.base} (${status ?? "?"}; a private repository needs a token that may read it)`;
      case "RevisionNotFound":
        return `revision "${call.revision}" does not exist in ${repo} (${status ?? "?"})`;
      case "EntryNotFound":
        return `no file "${call.repo.path ?? ""}" in ${repo} at revision "${call.revision}" (${status ?? "?"})`;
      case "GatedRepo":
        return `${repo} is gated: the token's account has not been granted access (${status ?? "?"})`;
      default:
        return undefined;
    }
  },
};
