// file:// back-to-source (issue 23): a path on this host, for seeding the swarm from a local
// disk or an NFS mount, as Dragonfly's client does. Only a local dfget may ask for one (the
// daemon registers this backend for the unix socket's requests, never for a remote party's
// seed trigger or the proxy): a remote caller must not make the daemon read its host's files.
//
// The daemon reads the file with its own rights on behalf of whoever can reach its socket, so
// it serves only files that every user of the host may read (o+r, and every directory on the
// way o+x), unless backend.file.allowPrivate says the socket's users are trusted with the
// daemon's rights. Files change in place, so a task is pinned to a strong ETag made of the
// file's identity (device, inode, size, mtime in ns), checked before and after every read.
//
// A directory URL is listed for `dfget -r` (ListTaskEntries) under the same rule: every
// directory on the way, and each one below it, must be searchable and readable by every user;
// the files below it are listed with their sizes (whether each may be read is checked when it is
// downloaded, as above). Symbolic links to files are files; links to directories are not
// followed (a link may loop or lead out of the tree).
import type { BigIntStats } from "node:fs";
import { open, opendir, stat, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Readable } from "node:stream";
import { originChanged } from "./pin.js";
import { BackendError, type Backend, type BackendRequest, type ByteRange, type GetResult, type ListedEntry, type Listing, type StatResult } from "./types.js";

/** Bytes per read: large enough that a 4 MiB piece takes four reads. */
const READ_CHUNK = 1 << 20;
/** A directory tree of more entries than this is refused rather than held in memory and answered in one message. */
const MAX_LISTED_ENTRIES = 100_000;

export interface FileBackendOptions {
  /** Serve files other users may not read (backend.file.allowPrivate). */
  allowPrivate: boolean;
}

/** The validator of a file's current content: another inode, size or mtime is another version. */
export function fileEtag(st: BigIntStats): string {
  return `"${st.dev.toString(16)}-${st.ino.toString(16)}-${st.size.toString(16)}-${st.mtimeNs.toString(16)}"`;
}

function headersOf(st: BigIntStats): Record<string, string> {
  return { etag: fileEtag(st), "last-modified": st.mtime.toUTCString(), "content-length": String(st.size) };
}

/** A file system error as the backend error an origin's answer would be (404, 403, …). */
function failure(url: string, e: unknown): BackendError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "ENOENT" || code === "ENOTDIR") return new BackendError(`${url}: no such file`, 404);
  if (code === "EACCES" || code === "EPERM") return new BackendError(`${url}: permission denied`, 403);
  if (code === "EISDIR") return new BackendError(`${url}: is a directory`, 400);
  // EIO, ESTALE on NFS, …: the disk's trouble, maybe passing.
  return new BackendError(`${url}: ${(e as Error).message}`, undefined, {}, true);
}

export class FileBackend implements Backend {
  readonly schemes = ["file"] as const;

  constructor(private readonly options: FileBackendOptions) {}

  /** The local path of a file:// URL (only this host's: file://localhost/… or file:///…). */
  private pathOf(url: string): string {
    const u = new URL(url);
    if (u.hostname !== "" && u.hostname !== "localhost") throw new BackendError(`${url}: file URLs name a path on this host (file:///path), not on ${u.hostname}`, 400);
    if (u.search !== "") throw new BackendError(`${url}: a file URL has no query`, 400);
    return fileURLToPath(u);
  }

  /** Refuses a file other users may not read, unless allowed (see the top of this file). */
  private async checkReadable(url: string, path: string, st: BigIntStats): Promise<void> {
    if (!st.isFile()) throw new BackendError(`${url}: ${st.isDirectory() ? "is a directory" : "is not a regular file"}`, 400);
    if (this.options.allowPrivate) return;
    if ((Number(st.mode) & 0o004) === 0) throw new BackendError(`${url}: not readable by every user (mode ${(Number(st.mode) & 0o777).toString(8)}); the daemon reads files for any user of its socket, so it serves only those (chmod o+r), unless backend.file.allowPrivate is set`, 403);
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      const d = await stat(dir);
      if ((d.mode & 0o001) === 0) throw new BackendError(`${url}: directory ${dir} is not searchable by every user (mode ${(d.mode & 0o777).toString(8)}); the daemon serves only files every user may read, unless backend.file.allowPrivate is set`, 403);
      if (dir === dirname(dir)) break;
    }
  }

  /** Refuses a directory other users may not list (or, with `ancestors`, reach), unless allowed (see the top of this file). */
  private async checkListable(url: string, path: string, ancestors: boolean): Promise<void> {
    if (this.options.allowPrivate) return;
    for (let dir = path; ; dir = dirname(dir)) {
      const d = await stat(dir);
      const need = dir === path ? 0o005 : 0o001;
      if ((d.mode & need) !== need) throw new BackendError(`${url}: directory ${dir} is not ${need === 0o005 ? "readable and searchable" : "searchable"} by every user (mode ${(d.mode & 0o777).toString(8)}); the daemon lists only directories every user may list, unless backend.file.allowPrivate is set`, 403);
      if (!ancestors || dir === dirname(dir)) break;
    }
  }

  /** Every file and directory below a directory URL, each as its own file:// URL (directories end in "/"). */
  async list(req: BackendRequest): Promise<Listing> {
    const top = this.pathOf(req.url);
    try {
      const st = await stat(top);
      if (!st.isDirectory()) throw new BackendError(`${req.url}: is a file, not a directory`, 400);
      await this.checkListable(req.url, top, true);
      const entries: ListedEntry[] = [];
      // Entry URLs extend the URL asked for (file:///… or file://localhost/…), segment by segment.
      const base = req.url.endsWith("/") ? req.url : `${req.url}/`;
      const urlOf = (rel: string) => base + rel.split("/").map(encodeURIComponent).join("/");
      const dirs = [""];
      for (let rel = dirs.shift(); rel !== undefined; rel = dirs.shift()) {
        const dir = join(top, rel);
        // The ones above it were checked on the way down.
        if (rel !== "") await this.checkListable(req.url, dir, false);
        for await (const d of await opendir(dir)) {
          req.signal?.throwIfAborted();
          const child = rel === "" ? d.name : `${rel}/${d.name}`;
          if (d.isDirectory()) {
            dirs.push(child);
            entries.push({ url: `${urlOf(child)}/`, contentLength: 0, isDir: true });
          } else if (d.isFile() || d.isSymbolicLink()) {
            const target = await stat(join(top, child)).catch(() => undefined);
            if (!target?.isFile()) continue;
            entries.push({ url: urlOf(child), contentLength: target.size, isDir: false });
          }
          if (entries.length > MAX_LISTED_ENTRIES) throw new BackendError(`${req.url}: more than ${MAX_LISTED_ENTRIES} entries; list a narrower directory`, 400);
        }
      }
      return { entries };
    } catch (e) {
      throw e instanceof BackendError ? e : failure(req.url, e);
    }
  }

  async stat(req: BackendRequest): Promise<StatResult> {
    const path = this.pathOf(req.url);
    let st: BigIntStats;
    try {
      st = await stat(path, { bigint: true });
    } catch (e) {
      throw failure(req.url, e);
    }
    await this.checkReadable(req.url, path, st);
    return { contentLength: Number(st.size), statusCode: 200, headers: headersOf(st), rangeSupported: true, url: req.url };
  }

  async get(req: BackendRequest & { range?: ByteRange | undefined }): Promise<GetResult> {
    const path = this.pathOf(req.url);
    let handle;
    try {
      handle = await open(path, "r");
    } catch (e) {
      throw failure(req.url, e);
    }
    try {
      const st = await handle.stat({ bigint: true });
      await this.checkReadable(req.url, path, st);
      const etag = fileEtag(st);
      if (req.pin?.etag !== undefined && req.pin.etag !== etag) throw originChanged(req.url, `origin content changed: the task is pinned to ETag ${req.pin.etag}, the file now has ETag ${etag}`, 200, headersOf(st));
      const range = req.range;
      const size = Number(st.size);
      if (range && range.start + range.length > size) throw new BackendError(`${req.url}: range ${range.start}+${range.length} is beyond its ${size} bytes`, 416);
      const body = Readable.from(readChecked(req.url, handle, etag, range?.start ?? 0, range?.length ?? size, req.signal));
      handle = undefined; // the body closes it
      return { statusCode: range ? 206 : 200, headers: headersOf(st), body };
    } finally {
      await handle?.close();
    }
  }
}

/**
 * `length` bytes of the file from `start`, closing it at the end. A file that shrank, or whose
 * ETag changed by the last byte (written in place meanwhile), fails the body: its bytes may be
 * of two versions. A file replaced by rename is read whole from the old inode, one version.
 */
async function* readChecked(url: string, handle: FileHandle, etag: string, start: number, length: number, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  try {
    for (let pos = start, left = length; left > 0; ) {
      signal?.throwIfAborted();
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, left));
      const { bytesRead } = await handle.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) throw originChanged(url, `origin content changed while it was read: it ended at byte ${pos}`, 200, {});
      yield buf.subarray(0, bytesRead);
      pos += bytesRead;
      left -= bytesRead;
    }
    const now = fileEtag(await handle.stat({ bigint: true }));
    if (now !== etag) throw originChanged(url, `origin content changed while it was read: ETag ${etag} became ${now}`, 200, {});
  } finally {
    await handle.close();
  }
}
