// Writing an output file for a caller of the download socket whose uid is not the daemon's. A
// root daemon could write anywhere, so it writes only where the caller itself could create the
// file (caller-access.ts), and hands the file to the caller (fchown). A daemon of another user
// cannot hand files over: it writes only into a directory the caller can write too, and the file
// stays the daemon's (mode 0644, so the caller can read, move or delete it).
//
// How the write cannot be redirected: the output directory is opened once and every later name
// is looked up in that very directory through /proc/self/fd/<dirfd>/<name> (Node has no
// openat), so replacing a path component by a symlink after the checks changes nothing; the file
// is created O_EXCL|O_NOFOLLOW under a random temporary name (a symlink planted there is not
// followed), filled and chowned through its own descriptor, and only then renamed (overwrite) or
// linked (no overwrite: link(2) refuses an existing name) into place, so no partial file ever
// has the output's name. The cache's file is copied (reflinked where the filesystem can), never
// hard-linked: a hard link chowned to the caller would give the caller the daemon's cached piece
// data to rewrite. A task sealed at rest is written from its opened pieces instead, mode 0600:
// plaintext for its owner only, which only a root daemon can make the caller.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, copyFile, link, lstat, open, readlink, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import type { Stats } from "node:fs";
import { basename, dirname, isAbsolute } from "node:path";
import { callerMay, callerMayReplace, describeInode, MAY_EXEC, MAY_WRITE, type Caller } from "./caller-access.js";
import { isNativeError } from "../../native/index.js";
import { fdSink, OutputError, refuseOutput, refuseSealedHardLink, SEALED_OUTPUT_MODE, type OutputSource } from "./output.js";

/** Mode of an output written for another user: theirs to read (and, once chowned, to change). */
const CALLER_OUTPUT_MODE = 0o644;

const daemonUid = (): number => process.geteuid?.() ?? 0;

/** Whether a caller with this uid gets today's path (the daemon's own rights) or this one. */
export function isOtherUser(uid: number): boolean {
  return uid !== daemonUid();
}

/** A refusal, with what the caller can do when the daemon is not root. */
function denied(why: string, caller: Caller): OutputError {
  const d = daemonUid();
  const advice = d === 0 ? "" : `; the daemon runs as uid ${d}, not root, so it writes for uid ${caller.uid} only where uid ${caller.uid} may write itself (the file then belongs to uid ${d}): choose such a directory, run dfget as uid ${d}, or run the daemon as root`;
  return new OutputError(`${why}${advice}`, true);
}

/** The output's directory, held open so later look-ups cannot be redirected. */
interface PinnedDir {
  handle: FileHandle;
  st: Stats;
  /** `name` inside exactly this directory. */
  at(name: string): string;
}

async function pinDir(path: string, caller: Caller): Promise<PinnedDir> {
  if (!isAbsolute(path)) throw refuseOutput.relative(path);
  const dir = dirname(path);
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT" || e.code === "ENOTDIR") throw refuseOutput.noDirectory(dir);
    throw denied(`cannot open output directory ${dir}: ${e.message}`, caller);
  });
  try {
    // Creating a file also needs search on every directory above it: a writable directory
    // inside root's 0700 home is out of the caller's reach. From the top down, so a refusal
    // names only a directory whose parent the caller may search (nothing it could not see).
    const real = await readlink(`/proc/self/fd/${handle.fd}`);
    const above: string[] = [];
    for (let a = dirname(real); ; a = dirname(a)) {
      above.unshift(a);
      if (a === dirname(a)) break;
    }
    for (const a of above) {
      const s = await stat(a);
      if (!callerMay(caller, s, MAY_EXEC)) throw denied(`uid ${caller.uid} cannot reach ${dir}: ${a} is not searchable by it (${describeInode(s)})`, caller);
    }
    const st = await handle.stat();
    if (!callerMay(caller, st, MAY_WRITE | MAY_EXEC)) throw denied(`output directory ${dir} is not writable by uid ${caller.uid} (${describeInode(st)})`, caller);
    return { handle, st, at: (name) => `/proc/self/fd/${handle.fd}/${name}` };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/** Refuses a target the caller could not (re)place itself; an absent one is fine. */
async function checkTarget(dir: PinnedDir, path: string, caller: Caller, overwrite: boolean): Promise<void> {
  const st = await lstat(dir.at(basename(path))).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw e;
  });
  if (!st) return;
  if (st.isSymbolicLink()) throw denied(`output path ${path} is a symbolic link; the daemon does not follow links when writing for uid ${caller.uid} (remove it or choose another path)`, caller);
  if (st.isDirectory()) throw refuseOutput.isDirectory(path);
  if (!overwrite) throw refuseOutput.exists(path);
  if (!callerMay(caller, st, MAY_WRITE) || !callerMayReplace(caller, dir.st, st)) throw denied(`output file ${path} may not be replaced by uid ${caller.uid} (${describeInode(st)})`, caller);
}

function refuseHardLink(path: string, caller: Caller): OutputError {
  return denied(`cannot hard-link the cached file to ${path} for uid ${caller.uid}: the link would share the daemon's cache file with another user (drop --force-hard-link to get a copy)`, caller);
}

/** Checks before any download starts, so a refused path fails fast and nothing is fetched. */
export async function checkCallerOutputPath(path: string, opts: { overwrite: boolean; forceHardLink: boolean }, caller: Caller): Promise<void> {
  if (opts.forceHardLink) throw refuseHardLink(path, caller);
  const dir = await pinDir(path, caller);
  try {
    await checkTarget(dir, path, caller, opts.overwrite);
    // A daemon that is not root needs the directory to be its own to write too.
    if (daemonUid() !== 0) {
      await access(dir.at("."), constants.W_OK | constants.X_OK).catch(() => {
        throw denied(`output directory ${dirname(path)} is not writable by the daemon (${describeInode(dir.st)})`, caller);
      });
    }
  } finally {
    await dir.handle.close();
  }
}

/** Puts a copy of the task at `path`, owned by the caller when the daemon is root. */
export async function writeCallerOutput(source: OutputSource, path: string, opts: { overwrite: boolean; forceHardLink: boolean }, caller: Caller): Promise<"copy"> {
  if (opts.forceHardLink) throw source.writePlain ? refuseSealedHardLink(path) : refuseHardLink(path, caller);
  // The plain bytes of a sealed task go to their owner only: a daemon that cannot hand the
  // file over would keep it, readable by nobody else, so it refuses instead.
  if (source.writePlain && daemonUid() !== 0) throw denied(`task is sealed at rest, and its plain content is written only as a file of its owner (mode 0600), which a daemon not running as root cannot give uid ${caller.uid}`, caller);
  const dir = await pinDir(path, caller);
  const name = basename(path);
  const tmp = dir.at(`.${name}.damselfly-${randomBytes(6).toString("hex")}`);
  let created = false;
  try {
    await checkTarget(dir, path, caller, opts.overwrite);
    const file = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    created = true;
    try {
      // Through the descriptor's own /proc entry: the inode just created, whatever the name
      // points to by now. copyFile reflinks or copies in the kernel (no bytes through JS).
      if (source.writePlain) await source.writePlain(fdSink(file.fd));
      else await copyFile(source.contentPath, `/proc/self/fd/${file.fd}`, constants.COPYFILE_FICLONE);
      if (daemonUid() === 0) await file.chown(caller.uid, caller.gid);
      await file.chmod(source.writePlain ? SEALED_OUTPUT_MODE : CALLER_OUTPUT_MODE);
    } finally {
      await file.close();
    }
    if (opts.overwrite) {
      // Checked again: the target may have changed during the copy.
      await checkTarget(dir, path, caller, true);
      await rename(tmp, dir.at(name));
    } else {
      await link(tmp, dir.at(name)).catch((e: NodeJS.ErrnoException) => {
        throw e.code === "EEXIST" ? refuseOutput.exists(path) : e;
      });
      await unlink(tmp);
    }
    created = false;
    return "copy";
  } catch (e) {
    if (created) await unlink(tmp).catch(() => undefined);
    if (e instanceof OutputError || isNativeError(e)) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === "EACCES" || err.code === "EPERM") throw denied(`cannot write ${path}: ${err.message}`, caller);
    throw new OutputError(`cannot write ${path}: ${err.message}`);
  } finally {
    await dir.handle.close();
  }
}
