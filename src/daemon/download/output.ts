// Writing a finished task to the caller's output path without ever leaving a partial file
// there: the bytes go to a temporary name in the target directory (hard link to the task file
// when on the same filesystem, else a reflink-or-copy), and only a complete file is renamed
// into place. Without overwrite, an existing file is never replaced. This is the path for a
// caller with the daemon's own uid; another user's output goes through caller-output.ts.
// A task sealed at rest (storage.encryption) is neither linked nor copied, its file holding
// ciphertext: its pieces are opened into a new file readable by its owner only (0600).
import { constants, write } from "node:fs";
import { access, copyFile, link, open, rename, stat, unlink } from "node:fs/promises";
import type { PlainSink } from "../storage/types.js";
import { basename, dirname, isAbsolute, join } from "node:path";
import { randomBytes } from "node:crypto";
import { isNativeError } from "../../native/index.js";

export class OutputError extends Error {
  override name = "OutputError";
  /** `denied`: the caller may not write there (PERMISSION_DENIED); otherwise a bad request. */
  constructor(
    message: string,
    readonly denied = false,
  ) {
    super(message);
  }
}

/** The refusals of an output path that the daemon's own path and a caller's (caller-output.ts) share. */
export const refuseOutput = {
  relative: (path: string) => new OutputError(`output path must be absolute: ${path}`),
  noDirectory: (dir: string) => new OutputError(`output directory does not exist: ${dir}`),
  isDirectory: (path: string) => new OutputError(`output path is a directory: ${path}`),
  exists: (path: string) => new OutputError(`output file already exists (use --overwrite to replace it): ${path}`),
};

/** What an output is made of: the task's file, or the opened pieces of a task sealed at rest. */
export interface OutputSource {
  contentPath: string;
  /** Set for a task sealed at rest: writes the plain content through `sink`. */
  writePlain?: ((sink: PlainSink) => Promise<void>) | undefined;
}

/** Writes into the file open at `fd`, all of each buffer at its position. */
export function fdSink(fd: number): PlainSink {
  const once = (data: Buffer, offset: number, position: number) =>
    new Promise<number>((resolve, reject) => write(fd, data, offset, data.length - offset, position, (err, n) => (err ? reject(err) : resolve(n))));
  return async (data, position) => {
    for (let done = 0; done < data.length; ) {
      const n = await once(data, done, position + done);
      if (n <= 0) throw new Error(`writing at ${position + done} wrote nothing`);
      done += n;
    }
  };
}

/** A temporary name beside `path`, for the output until it is complete. */
export function tempBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.damselfly-${randomBytes(6).toString("hex")}`);
}

/**
 * Puts the complete temporary file `tmp` at `path`: renamed over it with overwrite; else
 * linked, since link(2) refuses an existing target, which closes the check-then-rename race.
 */
export async function placeOutput(tmp: string, path: string, overwrite: boolean): Promise<void> {
  if (overwrite) return rename(tmp, path);
  await link(tmp, path).catch((e: NodeJS.ErrnoException) => {
    throw e.code === "EEXIST" ? refuseOutput.exists(path) : new OutputError(`cannot write ${path}: ${e.message}`);
  });
  await unlink(tmp);
}

/** The error an output that could not be written ends with. */
export function outputFailure(e: unknown, path: string): unknown {
  // A sealed piece that fails its tag (DF_AUTH) is the cache's failure, not the path's.
  return e instanceof OutputError || isNativeError(e) ? e : new OutputError(`cannot write ${path}: ${(e as Error).message}`);
}

/** Mode of an output written from a task sealed at rest: plaintext for its owner only. */
export const SEALED_OUTPUT_MODE = 0o600;

export const refuseSealedHardLink = (path: string) =>
  new OutputError(`cannot hard-link the task file to ${path}: the task is sealed at rest, so its file holds ciphertext (drop --force-hard-link to get a plain copy)`);

/** Creates `path` (O_EXCL, owner-only) and fills it from a sealed task's opened pieces. */
async function writePlainFile(writePlain: (sink: PlainSink) => Promise<void>, path: string): Promise<void> {
  const file = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, SEALED_OUTPUT_MODE);
  try {
    await writePlain(fdSink(file.fd));
    // The umask may have taken bits away, never added: set exactly.
    await file.chmod(SEALED_OUTPUT_MODE);
  } finally {
    await file.close();
  }
}

/** Checks before any download starts, so a bad path fails fast. */
export async function checkOutputPath(path: string, overwrite: boolean): Promise<void> {
  if (!isAbsolute(path)) throw refuseOutput.relative(path);
  const dir = dirname(path);
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw refuseOutput.noDirectory(dir);
  try {
    await access(dir, constants.W_OK);
  } catch {
    throw new OutputError(`output directory is not writable: ${dir}`);
  }
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isDirectory()) throw refuseOutput.isDirectory(path);
  if (existing && !overwrite) throw refuseOutput.exists(path);
}

export async function writeOutput(source: OutputSource, path: string, opts: { overwrite: boolean; forceHardLink: boolean }): Promise<"hardlink" | "copy"> {
  const tmp = tempBeside(path);
  let how: "hardlink" | "copy" = "hardlink";
  const { contentPath, writePlain } = source;
  if (writePlain && opts.forceHardLink) throw refuseSealedHardLink(path);
  try {
    if (writePlain) {
      how = "copy";
      await writePlainFile(writePlain, tmp);
    } else {
      try {
        await link(contentPath, tmp);
      } catch (e) {
        if (opts.forceHardLink) throw new OutputError(`cannot hard-link the task file to ${path}: ${(e as Error).message}`);
        how = "copy";
        await copyFile(contentPath, tmp, constants.COPYFILE_FICLONE);
      }
    }
    await placeOutput(tmp, path, opts.overwrite);
    return how;
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw outputFailure(e, path);
  }
}
