// hdfs:// URLs (issue 23) in Dragonfly's form, and the WebHDFS requests they map to. As
// Dragonfly's client (dragonfly-client-backend hdfs.rs, through OpenDAL's webhdfs service):
//
//   hdfs://<namenode>[:<port>]/<path>   the namenode's HTTP address (WebHDFS), port 9870 by default
//   hdfs://<namenode>[:<port>]/<dir>/   a directory (ListTaskEntries, dfget -r)
//
// The path is percent-decoded into the HDFS path; WebHDFS gets it at /webhdfs/v1/<path>, each
// segment encoded again. The delegation token (Download.hdfs.delegation_token, dfget
// --hdfs-delegation-token) rides as WebHDFS's `delegation` query parameter, never in the URL the
// task is known by (which is logged, reported to the scheduler and part of the task id).
import { BackendError } from "./types.js";

export const HDFS_SCHEME = "hdfs";

/** The namenode's HTTP port when the URL names none (Hadoop 3's dfs.namenode.http-address). */
export const DEFAULT_NAMENODE_HTTP_PORT = 9870;

export interface HdfsUrl {
  /** `http://namenode:port`, the WebHDFS endpoint. */
  endpoint: string;
  /** The HDFS path, percent-decoded, absolute; a directory's ends with "/". */
  path: string;
}

/** Parses an hdfs:// URL; anything else is refused (400) naming the URL and what is wrong. */
export function parseHdfsUrl(url: string): HdfsUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BackendError(`invalid URL: ${url}`, 400);
  }
  if (u.protocol !== `${HDFS_SCHEME}:`) throw new BackendError(`${url}: not an hdfs:// URL`, 400);
  if (u.username !== "" || u.password !== "") throw new BackendError(`hdfs://${u.host}${u.pathname}: credentials do not belong in the URL; pass a delegation token as the download's HDFS options (dfget --hdfs-delegation-token)`, 400);
  if (u.hostname === "") throw new BackendError(`${url}: no namenode: expected hdfs://<namenode>[:<port>]/<path>`, 400);
  if (u.search !== "" || u.hash !== "") throw new BackendError(`${url}: an hdfs:// URL has no query or fragment`, 400);
  let path: string;
  try {
    path = decodeURIComponent(u.pathname);
  } catch {
    throw new BackendError(`${url}: the path is not valid percent-encoding`, 400);
  }
  if (!path.startsWith("/")) path = `/${path}`;
  // HDFS refuses these names itself; refused here so that the URL never means another path.
  if (path.split("/").some((s) => s === "." || s === "..")) throw new BackendError(`${url}: the path has a "." or ".." segment`, 400);
  const port = u.port === "" ? DEFAULT_NAMENODE_HTTP_PORT : Number(u.port);
  // An IPv6 namenode keeps its brackets in `hostname`.
  return { endpoint: `http://${u.hostname}:${port}`, path };
}

/** A file's URL: refuses a directory's (ending in "/"). */
export function parseHdfsFileUrl(url: string): HdfsUrl {
  const h = parseHdfsUrl(url);
  if (h.path.endsWith("/")) throw new BackendError(`${url}: names a directory; a single file is expected (download a directory with dfget --recursive)`, 400);
  return h;
}

/** A directory's URL: its path ends with "/" (`hdfs://nn:9870/` is the root). */
export function parseHdfsDirectoryUrl(url: string): HdfsUrl {
  const h = parseHdfsUrl(url);
  if (!h.path.endsWith("/")) throw new BackendError(`${url}: names a file; a directory ends with "/"`, 400);
  return h;
}

/** An HDFS path with each segment percent-encoded (slashes kept). */
export function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

/**
 * The WebHDFS request URL for `op` on `path`: `<endpoint>/webhdfs/v1<path>?op=<op>&…`, with the
 * delegation token when there is one.
 */
export function webHdfsUrl(h: HdfsUrl, op: string, params: Record<string, string | number> = {}, delegationToken?: string): string {
  const q = new URLSearchParams({ op });
  for (const [k, v] of Object.entries(params)) q.set(k, String(v));
  if (delegationToken) q.set("delegation", delegationToken);
  // A directory's trailing slash is not part of its HDFS name.
  const path = h.path.length > 1 ? h.path.replace(/\/+$/, "") : h.path;
  return `${h.endpoint}/webhdfs/v1${encodePath(path)}?${q.toString()}`;
}

/** The hdfs:// URL of `name` below the directory URL `dirUrl` (text; `name` is one segment). */
export function hdfsChildUrl(dirUrl: string, name: string, isDir: boolean): string {
  const base = dirUrl.endsWith("/") ? dirUrl : `${dirUrl}/`;
  return `${base}${encodeURIComponent(name)}${isDir ? "/" : ""}`;
}
