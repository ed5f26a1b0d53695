// Model hub URLs (issue 23) in Dragonfly's forms, shared by the daemon's hub backends and
// dfget's flags. Dragonfly's client (dragonfly-client-backend hugging_face.rs, model_scope.rs)
// reads the repository from the URL's host and path together:
//
//   hf://[models/|datasets/|spaces/]<owner>/<repo>[/<path>]
//   modelscope://[models/|datasets/]<owner>/<repo>[/<path>]
//
// No type prefix means a model. Without a path the URL names the whole repository (dfget -r).
// The revision, the token and the hub's base URL are not in the URL: they travel with the
// download (Download.hugging_face / model_scope: revision, token, base_url; dfget --hf-revision,
// --hf-token, --hf-base-url and their --ms-* twins), so the URL never carries a secret.

export const MODEL_HUB_SCHEMES = ["hf", "modelscope"] as const;
export type ModelHubScheme = (typeof MODEL_HUB_SCHEMES)[number];

export function isModelHubScheme(scheme: string): scheme is ModelHubScheme {
  return (MODEL_HUB_SCHEMES as readonly string[]).includes(scheme);
}

export type RepoType = "models" | "datasets" | "spaces";

/** The repository types each hub serves (ModelScope has no spaces in Dragonfly's client). */
export const REPO_TYPES: Record<ModelHubScheme, readonly RepoType[]> = {
  hf: ["models", "datasets", "spaces"],
  modelscope: ["models", "datasets"],
};

/** Dragonfly's default revision per hub when none is given (dfget's --hf-revision / --ms-revision defaults). */
export const DEFAULT_REVISION: Record<ModelHubScheme, string> = { hf: "main", modelscope: "master" };

/**
 * The header naming the commit a revision is at: Hugging Face's file answers carry it, and the
 * daemon's ListTaskEntries answer for a hub directory carries the commit it listed, so that dfget
 * downloads every file of the listing at that one commit.
 */
export const REPO_COMMIT_HEADER = "x-repo-commit";

export interface HubUrl {
  scheme: ModelHubScheme;
  repoType: RepoType;
  /** `<owner>/<repo>`. */
  repoId: string;
  /** The file's path in the repository, percent-decoded; undefined for the repository itself. */
  path: string | undefined;
  /** The URL spelled the repository type out (`hf://models/o/r`): entry URLs keep the user's form. */
  typeGiven: boolean;
}

export type HubUrlWrong = "not-hub" | "credentials" | "query" | "no-repo" | "encoding" | "segment";

/**
 * Parses a hub URL, or says which rule it breaks: credentials or a query in the URL (the
 * revision and the token are download options), fewer than owner and repo, invalid
 * percent-encoding, or an empty, "." or ".." segment (a path that is not a file of the repo).
 * A trailing "/" is allowed: `hf://owner/repo/` is the repository (dfget -r adds it).
 */
export function parseHubUrl(u: URL): { ok: true; value: HubUrl } | { ok: false; wrong: HubUrlWrong } {
  const scheme = u.protocol.replace(/:$/, "");
  if (!isModelHubScheme(scheme)) return { ok: false, wrong: "not-hub" };
  if (u.username !== "" || u.password !== "") return { ok: false, wrong: "credentials" };
  if (u.search !== "") return { ok: false, wrong: "query" };
  let segments: string[];
  try {
    segments = `${u.host}${u.pathname.replace(/\/$/, "")}`.split("/").map(decodeURIComponent);
  } catch {
    return { ok: false, wrong: "encoding" };
  }
  let repoType: RepoType = "models";
  const first = segments[0] as RepoType;
  const typeGiven = REPO_TYPES[scheme].includes(first);
  if (typeGiven) {
    repoType = first;
    segments = segments.slice(1);
  }
  if (segments.length < 2 || segments[0] === "" || segments[1] === "") return { ok: false, wrong: "no-repo" };
  if (segments.some((s) => s === "" || s === "." || s === ".." || s.includes("/"))) return { ok: false, wrong: "segment" };
  return { ok: true, value: { scheme, repoType, repoId: `${segments[0]}/${segments[1]}`, path: segments.length > 2 ? segments.slice(2).join("/") : undefined, typeGiven } };
}

/** A path in a repository as URL text, each segment percent-encoded ("/" kept between them). */
export function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

/**
 * The hub URL of a file in the repository of `u`, as Dragonfly's listing writes its entries (no
 * `models/` prefix for models, unless the repository's URL had one: dfget places each entry by
 * its URL relative to the directory URL the user gave).
 */
export function hubFileUrl(u: HubUrl, path: string): string {
  const prefix = u.repoType === "models" && !u.typeGiven ? "" : `${u.repoType}/`;
  return `${u.scheme}://${prefix}${encodePath(u.repoId)}/${encodePath(path)}`;
}
