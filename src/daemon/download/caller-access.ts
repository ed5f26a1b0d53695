// What a local caller of the download socket may do to a file or directory, decided the way the
// kernel decides it for that caller's own process, so a daemon with more rights (root) never
// writes where the caller could not. The caller's uid/gid come from SO_PEERCRED (the kernel's
// record of who connected, see grpc/unix-callers.ts); its supplementary groups from
// /proc/<pid>/status, which holds the groups the calling process really has: a process that
// dropped groups (setpriv --clear-groups, a service with SupplementaryGroups= unset) must not get
// them back, which getgrouplist(3) on the user's name would do. POSIX ACLs are not read: a
// directory whose ACL grants more than its mode is refused (safe); one whose ACL takes away what
// its mode grants is judged by the mode.
import { readFile } from "node:fs/promises";

/** Who called, as the kernel would check its access. */
export interface Caller {
  uid: number;
  gid: number;
  /** Supplementary group ids. */
  groups: readonly number[];
}

/** The parts of a stat the access check reads. */
export interface Inode {
  uid: number;
  gid: number;
  mode: number;
}

export const MAY_READ = 4;
export const MAY_WRITE = 2;
/** Search for a directory. */
export const MAY_EXEC = 1;

/**
 * Whether `caller` has all of `want` (MAY_* bits) on `inode` by its mode: the owner class when
 * the caller owns it, else the group class when one of its groups is the inode's, else others;
 * classes do not add up (an owner without write is refused even if others may write), as in the
 * kernel. uid 0 passes (CAP_DAC_OVERRIDE) except execute on a non-directory without any x bit.
 */
export function callerMay(caller: Caller, inode: Inode, want: number): boolean {
  if (caller.uid === 0) {
    const isDir = (inode.mode & 0o170000) === 0o040000;
    return (want & MAY_EXEC) === 0 || isDir || (inode.mode & 0o111) !== 0;
  }
  let bits: number;
  if (inode.uid === caller.uid) bits = (inode.mode >> 6) & 7;
  else if (inode.gid === caller.gid || caller.groups.includes(inode.gid)) bits = (inode.mode >> 3) & 7;
  else bits = inode.mode & 7;
  return (bits & want) === want;
}

/**
 * In a sticky directory (/tmp), only the entry's owner, the directory's owner or root may remove
 * or replace an entry; an overwrite is a replace.
 */
export function callerMayReplace(caller: Caller, dir: Inode, entry: Inode): boolean {
  if ((dir.mode & 0o1000) === 0) return true;
  return caller.uid === 0 || caller.uid === entry.uid || caller.uid === dir.uid;
}

/** "0755 owned by uid 0, gid 0", for refusal messages. */
export function describeInode(i: Inode): string {
  return `mode ${(i.mode & 0o7777).toString(8).padStart(4, "0")}, owner uid ${i.uid}, gid ${i.gid}`;
}

/**
 * The caller with its supplementary groups. The status file must still describe the process
 * that connected (same effective uid and gid): a pid that exited and was reused by another
 * process, or a process that changed identity, yields no supplementary groups — fewer rights,
 * never more.
 */
export async function callerOf(cred: { pid: number; uid: number; gid: number }): Promise<Caller> {
  const text = await readFile(`/proc/${cred.pid}/status`, "utf8").catch(() => "");
  return { uid: cred.uid, gid: cred.gid, groups: groupsFromStatus(text, cred.uid, cred.gid) };
}

/** The Groups: line of a /proc/<pid>/status, when its Uid:/Gid: lines show `uid`/`gid` as effective ids. */
export function groupsFromStatus(status: string, uid: number, gid: number): number[] {
  // [\t ], not \s: an empty "Groups:" line must not run on into the next line's numbers.
  const field = (name: string) => new RegExp(`^${name}:[\\t ]*([^\\n]*)$`, "m").exec(status)?.[1]?.trim().split(/\s+/).filter(Boolean).map(Number);
  // Uid:/Gid: list real, effective, saved and filesystem ids; the kernel checks files with the last.
  const uids = field("Uid");
  const gids = field("Gid");
  if (uids?.[1] !== uid || uids[3] !== uid || gids?.[1] !== gid || gids[3] !== gid) return [];
  return (field("Groups") ?? []).filter((g) => Number.isInteger(g) && g >= 0);
}
