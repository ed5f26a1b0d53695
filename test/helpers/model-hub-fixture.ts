// A small model hub for tests (issue 23): no hub is reachable here, so this speaks the part of
// the Hugging Face Hub's or ModelScope's HTTP API that hf:// / modelscope:// back-to-source and
// the real huggingface_hub client use, over repositories held in memory, on 127.0.0.1:
//
// Hugging Face (`hub: "hf"`):
//   HEAD/GET /[datasets/|spaces/]<owner>/<repo>/resolve/<revision>/<path>   the file (Range, If-Match),
//     with X-Repo-Commit and an ETag; refusals with X-Error-Code (RepoNotFound, RevisionNotFound,
//     EntryNotFound) as the hub sends them
//   GET /api/<models|datasets|spaces>/<owner>/<repo>/revision/<revision>   {_id, id, sha, siblings}
//   GET /api/<type>/<owner>/<repo>/tree/<revision>[/<folder>]?recursive=true  paged, Link rel="next"
// ModelScope (`hub: "modelscope"`):
//   HEAD/GET /<models|datasets>/<owner>/<repo>/resolve/<revision>/<path>
//   GET /api/v1/<models|datasets>/<owner>/<repo>/repo/files?Revision=&Recursive=true
//     {Code, Data: {Files: [{Path, Name, Type, Size}]}, Message}
//
// A repository may require a token (Authorization: Bearer); a branch can be moved to a new
// commit, also right after a listing is answered (`afterListing`), before any file of it is
// asked for. The bytes of file content served are counted per file path.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type Hub = "hf" | "modelscope";

interface Repo {
  token: string | undefined;
  /** Branch or tag → commit sha. */
  refs: Map<string, string>;
  /** Commit sha → files (path → content). */
  commits: Map<string, Map<string, Buffer>>;
}

export interface HubFixture {
  /** The hub's base URL (dfget --hf-base-url / --ms-base-url, backend.*.endpoint). */
  url: string;
  /** Adds (or moves `revision` of) a repository `type/owner/repo` to a new commit of `files`; returns the commit sha. */
  commit(repo: string, files: Record<string, Buffer>, opts?: { revision?: string; token?: string; type?: "models" | "datasets" | "spaces" }): string;
  /** Bytes of file content served for `path` (any repository), 0 when never. */
  served(path: string): number;
  /** Tree entries per page (Hugging Face's listing), to exercise pagination. */
  pageSize: number;
  /** Method and path of every request, in order. */
  log: string[];
  /** Called once a repository's file listing has been answered (its last page): a test moves a branch here. */
  afterListing: ((repo: string) => void) | undefined;
  close(): Promise<void>;
}

const sha1 = (s: string) => createHash("sha1").update(s).digest("hex");
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

export async function startHubFixture(hub: Hub): Promise<HubFixture> {
  const repos = new Map<string, Repo>();
  const served = new Map<string, number>();
  const log: string[] = [];
  let commits = 0;

  const fixture: HubFixture = {
    url: "",
    pageSize: 1000,
    log,
    afterListing: undefined,
    commit(repoId, files, opts = {}) {
      const key = `${opts.type ?? "models"}/${repoId}`;
      let r = repos.get(key);
      if (!r) {
        r = { token: opts.token, refs: new Map(), commits: new Map() };
        repos.set(key, r);
      }
      const sha = sha1(`${key}:${++commits}`);
      r.commits.set(sha, new Map(Object.entries(files)));
      r.refs.set(opts.revision ?? (hub === "hf" ? "main" : "master"), sha);
      return sha;
    },
    served: (path) => served.get(path) ?? 0,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };

  /** The repository and commit a request names, or the refusal it gets. */
  function lookup(req: IncomingMessage, res: ServerResponse, key: string, revision: string): { repo: Repo; sha: string } | undefined {
    const r = repos.get(key);
    const auth = req.headers.authorization;
    if (!r) {
      refuse(res, hub === "hf" ? 401 : 404, "RepoNotFound", `Repository not found: ${key}`);
      return undefined;
    }
    if (r.token !== undefined && auth !== `Bearer ${r.token}`) {
      // The public hub answers a private repository without a token as a missing one, and a wrong token as invalid credentials.
      if (auth === undefined) refuse(res, 401, "RepoNotFound", `Repository not found: ${key}`);
      else refuse(res, 401, undefined, "Invalid credentials in Authorization header");
      return undefined;
    }
    const sha = r.commits.has(revision) ? revision : r.refs.get(revision);
    if (sha === undefined) {
      refuse(res, 404, "RevisionNotFound", `Invalid rev id: ${revision}`);
      return undefined;
    }
    return { repo: r, sha };
  }

  function refuse(res: ServerResponse, status: number, code: string | undefined, message: string): void {
    if (hub === "hf") {
      if (code) res.setHeader("x-error-code", code);
      res.setHeader("x-error-message", message);
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ error: message }));
    } else {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ Code: status === 401 ? 10010205401 : 10010205404, Message: message, Success: false }));
    }
  }

  function serveFile(req: IncomingMessage, res: ServerResponse, key: string, revision: string, path: string): void {
    const found = lookup(req, res, key, revision);
    if (!found) return;
    const content = found.repo.commits.get(found.sha)?.get(path);
    if (content === undefined) return refuse(res, 404, "EntryNotFound", `${path} does not exist on "${revision}"`);
    const etag = `"${sha256(content)}"`;
    const headers: Record<string, string> = { etag, "accept-ranges": "bytes", "content-type": "application/octet-stream" };
    if (hub === "hf") headers["x-repo-commit"] = found.sha;
    const ifMatch = req.headers["if-match"];
    if (ifMatch !== undefined && ifMatch !== etag) return void res.writeHead(412, headers).end();
    let start = 0;
    let end = content.length - 1;
    let status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (m?.[1] !== undefined) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), content.length - 1) : content.length - 1;
      if (start >= content.length) return void res.writeHead(416, { ...headers, "content-range": `bytes */${content.length}` }).end();
      status = 206;
      headers["content-range"] = `bytes ${start}-${end}/${content.length}`;
    }
    const body = content.subarray(start, end + 1);
    headers["content-length"] = String(body.length);
    res.writeHead(status, headers);
    if (req.method === "HEAD") return void res.end();
    served.set(path, (served.get(path) ?? 0) + body.length);
    res.end(body);
  }

  function json(res: ServerResponse, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(200, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
  }

  function hfApi(req: IncomingMessage, res: ServerResponse, u: URL, parts: string[]): void {
    // parts: [type, owner, repo, "revision"|"tree", revision, ...folder]
    const [type, owner, name, what, revision, ...folder] = parts;
    const key = `${type}/${owner}/${name}`;
    if (!owner || !name || !revision || (what !== "revision" && what !== "tree")) return refuse(res, 404, undefined, "Not Found");
    const found = lookup(req, res, key, revision);
    if (!found) return;
    const files = found.repo.commits.get(found.sha)!;
    if (what === "revision") {
      return json(res, { _id: sha1(key), id: `${owner}/${name}`, private: found.repo.token !== undefined, sha: found.sha, siblings: [...files.keys()].map((rfilename) => ({ rfilename })) });
    }
    const below = folder.length > 0 ? `${folder.join("/")}/` : "";
    const entries: unknown[] = [];
    const dirs = new Set<string>();
    for (const [path, content] of [...files.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      if (!path.startsWith(below)) continue;
      const segs = path.split("/");
      for (let i = 1; i < segs.length; i++) dirs.add(segs.slice(0, i).join("/"));
      entries.push({ type: "file", oid: sha1(`blob:${sha256(content)}`), size: content.length, path, ...(content.length > 1000 ? { lfs: { oid: sha256(content), size: content.length, pointerSize: 134 } } : {}) });
    }
    for (const d of dirs) if (d.startsWith(below)) entries.push({ type: "directory", oid: sha1(`tree:${d}`), size: 0, path: d });
    const cursor = Number(u.searchParams.get("cursor") ?? "0");
    const page = entries.slice(cursor, cursor + fixture.pageSize);
    const headers: Record<string, string> = {};
    if (cursor + fixture.pageSize < entries.length) {
      const next = new URL(u.href);
      next.searchParams.set("cursor", String(cursor + fixture.pageSize));
      headers.link = `<${next.href}>; rel="next"`;
    }
    json(res, page, headers);
    if (headers.link === undefined) fixture.afterListing?.(`${owner}/${name}`);
  }

  function msApi(req: IncomingMessage, res: ServerResponse, u: URL, parts: string[]): void {
    // parts: [type, owner, repo, "repo", "files"]
    const [type, owner, name, repoWord, filesWord] = parts;
    if (!owner || !name || repoWord !== "repo" || filesWord !== "files") return refuse(res, 404, undefined, "Not Found");
    const key = `${type}/${owner}/${name}`;
    const revision = u.searchParams.get("Revision") ?? "master";
    const r = repos.get(key);
    // An unknown revision is reported in Code with an HTTP 200, as the API does for some failures.
    if (r && (r.token === undefined || req.headers.authorization === `Bearer ${r.token}`) && !r.refs.has(revision) && !r.commits.has(revision)) {
      return json(res, { Code: 10010205001, Message: `Revision ${revision} not found`, Success: false });
    }
    const found = lookup(req, res, key, revision);
    if (!found) return;
    const Files = [...found.repo.commits.get(found.sha)!.entries()].map(([Path, c]) => ({ Path, Name: Path.split("/").pop(), Type: "blob", Size: c.length, Sha256: sha256(c) }));
    const dirs = new Set(Files.flatMap((f) => f.Path.split("/").slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join("/"))));
    json(res, { Code: 200, Data: { Files: [...Files, ...[...dirs].map((d) => ({ Path: d, Name: d.split("/").pop(), Type: "tree", Size: 0 }))] }, Message: "success", Success: true });
    fixture.afterListing?.(`${owner}/${name}`);
  }

  const server: Server = createServer((req, res) => {
    log.push(`${req.method ?? "?"} ${req.url ?? ""}`);
    // Absolute like the hub's own links (a tree page's Link rel="next"): on the address the client used.
    const u = new URL(req.url ?? "/", `http://${req.headers.host ?? "127.0.0.1"}`);
    let parts: string[];
    try {
      parts = u.pathname.split("/").slice(1).map(decodeURIComponent);
    } catch {
      return void res.writeHead(400).end();
    }
    if (hub === "hf" && parts[0] === "api") return hfApi(req, res, u, parts.slice(1));
    if (hub === "modelscope" && parts[0] === "api" && parts[1] === "v1") return msApi(req, res, u, parts.slice(2));
    // <[type/]owner/repo>/resolve/<revision>/<path>
    const at = parts.indexOf("resolve");
    const repoParts = parts.slice(0, at);
    const typed = hub === "modelscope" || repoParts.length === 3;
    const key = typed ? repoParts.join("/") : `models/${repoParts.join("/")}`;
    const revision = parts[at + 1];
    if (at < 0 || key.split("/").length !== 3 || revision === undefined || parts.length <= at + 2) return refuse(res, 404, undefined, "Not Found");
    serveFile(req, res, key, revision, parts.slice(at + 2).join("/"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fixture.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fixture;
}
