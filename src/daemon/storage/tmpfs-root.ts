// Where memory-tier tasks live. /dev/shm is world-writable: a name there that anyone can guess
// (damselfly-<ip>-<hostname>) could be created first by another user, as a symlink into a
// directory of theirs or as a directory they can read and plant pieces in, and the piece server
// serves what it finds. So the daemon's tmpfs root is a directory of its own user, created 0700,
// and it refuses one that is a symlink, belongs to another user, or is open to others. A one-shot
// dfget's daemon does not share it with the resident daemon of the same host (same host id, same
// task directories): it gets a fresh directory of its own, removed when it stops.
import { lstat, mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../../common/config.js";

/** `<tmpfsDir>/damselfly-<uid>/<host>/tasks`, after checking `<tmpfsDir>/damselfly-<uid>`. */
export async function ownTmpfsRoot(tmpfsDir: string, hostId: string): Promise<string> {
  const uid = process.getuid?.() ?? 0;
  const base = join(tmpfsDir, `damselfly-${uid}`);
  await mkdir(base, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "EEXIST") throw new ConfigError(`storage.tmpfsDir: cannot create ${base}: ${e.message}`);
  });
  await checkOwnDir(base, uid);
  return join(base, hostId.replace(/[^A-Za-z0-9.-]/g, "_"), "tasks");
}

/** Refuses `dir` unless it is a real directory of `uid` closed to everyone else. */
async function checkOwnDir(dir: string, uid: number): Promise<void> {
  const st = await lstat(dir);
  const refuse = (why: string) => new ConfigError(`storage.tmpfsDir: ${dir} ${why}; refusing it for memory-tier tasks (remove it, or set storage.tmpfsDir to a directory of this user)`);
  if (st.isSymbolicLink()) throw refuse("is a symlink");
  if (!st.isDirectory()) throw refuse("is not a directory");
  if (st.uid !== uid) throw refuse(`belongs to uid ${st.uid}, not ${uid}`);
  if ((st.mode & 0o077) !== 0) throw refuse(`has mode ${(st.mode & 0o777).toString(8)}, open to other users`);
}

/**
 * A one-shot daemon's root: `<tmpfsDir>/damselfly-<uid>-oneshot-XXXXXX/tasks`. mkdtemp makes a
 * new, unguessable name with mode 0700 and never reuses an existing one, so nobody can have
 * planted it; it is still checked like the shared root. `remove` deletes it and all it holds.
 */
export async function privateTmpfsRoot(tmpfsDir: string): Promise<{ root: string; remove(): Promise<void> }> {
  const uid = process.getuid?.() ?? 0;
  const base = await mkdtemp(join(tmpfsDir, `damselfly-${uid}-oneshot-`)).catch((e: NodeJS.ErrnoException) => {
    throw new ConfigError(`storage.tmpfsDir: cannot create a directory in ${tmpfsDir}: ${e.message}`);
  });
  const remove = () => rm(base, { recursive: true, force: true });
  try {
    await checkOwnDir(base, uid);
  } catch (e) {
    await remove();
    throw e;
  }
  return { root: join(base, "tasks"), remove };
}
