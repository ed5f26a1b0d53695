// Where memory-tier tasks live. /dev/shm is world-writable: a name there that anyone can guess
// (damselfly-<ip>-<hostname>) could be created first by another user, as a symlink into a
// directory of theirs or as a directory they can read and plant pieces in, and the piece server
// serves what it finds. So the daemon's tmpfs root is a directory of its own user, created 0700,
// and it refuses one that is a symlink, belongs to another user, or is open to others.
import { lstat, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../../common/config.js";

/** `<tmpfsDir>/damselfly-<uid>/<host>/tasks`, after checking `<tmpfsDir>/damselfly-<uid>`. */
export async function ownTmpfsRoot(tmpfsDir: string, hostId: string): Promise<string> {
  const uid = process.getuid?.() ?? 0;
  const base = join(tmpfsDir, `damselfly-${uid}`);
  await mkdir(base, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "EEXIST") throw new ConfigError(`storage.tmpfsDir: cannot create ${base}: ${e.message}`);
  });
  const st = await lstat(base);
  const refuse = (why: string) => new ConfigError(`storage.tmpfsDir: ${base} ${why}; refusing it for memory-tier tasks (remove it, or set storage.tmpfsDir to a directory of this user)`);
  if (st.isSymbolicLink()) throw refuse("is a symlink");
  if (!st.isDirectory()) throw refuse("is not a directory");
  if (st.uid !== uid) throw refuse(`belongs to uid ${st.uid}, not ${uid}`);
  if ((st.mode & 0o077) !== 0) throw refuse(`has mode ${(st.mode & 0o777).toString(8)}, open to other users`);
  return join(base, hostId.replace(/[^A-Za-z0-9.-]/g, "_"), "tasks");
}
