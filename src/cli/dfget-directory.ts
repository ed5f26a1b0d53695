// `dfget -r/--recursive URL -O DIR` (issue 23), as Dragonfly's dfget does it: the daemon lists
// the entries below the directory URL (dfdaemon.v2 ListTaskEntries, with the download's
// credentials), and each object is then downloaded as a task of its own (its own pin, its own
// peers) to DIR under its path relative to the directory. The daemon writes each output
// atomically, so a failed object leaves no file; the objects that finished are kept.
//
// The entries' URLs come from the daemon as text. Every one is checked before anything is
// downloaded: a key with an empty, "." or ".." segment would land outside DIR (or on another
// key's file), so the whole download is refused naming it. Then --include-files/--exclude-files
// pick the entries to download (./dfget-select.ts), on the same relative paths.
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Entry } from "../gen/dfdaemon/v2/dfdaemon.js";
import { selectEntries, selects, type FileSelection } from "./dfget-select.js";

/** Objects downloaded at once: each is a task with its own scheduler session and pieces in flight. */
export const DIRECTORY_CONCURRENCY = 4;

export interface DirectoryFetcher {
  /** The entries below `dirUrl` (ListTaskEntries). */
  list(dirUrl: string): Promise<Entry[]>;
  /** Downloads one object to `output`; resolves to its length. */
  fetch(url: string, output: string): Promise<number>;
}

/** `url` as a directory URL: its path ends with "/" (dfget -r on `s3://b/dir` means `s3://b/dir/`). */
export function directoryUrl(url: string): string {
  const u = new URL(url);
  if (!u.pathname.endsWith("/")) u.pathname += "/";
  return u.toString();
}

/**
 * The path of an entry relative to the directory, or why it cannot be written below the output
 * directory. Both URLs are compared as text after the bucket, percent-decoded: parsing the
 * entry's URL would resolve its ".." segments away.
 */
export function entryPath(dirUrl: string, entry: Entry): { path: string } | { wrong: string } {
  const dir = new URL(dirUrl);
  const root = `${dir.protocol}//${dir.host}/`;
  const name = `"${entry.url}"`;
  if (!entry.url.startsWith(root)) return { wrong: `${name} is not in ${root}` };
  let key: string;
  let prefix: string;
  try {
    key = decodeURIComponent(entry.url.slice(root.length));
    prefix = decodeURIComponent(dir.pathname.slice(1));
  } catch {
    return { wrong: `${name} is not valid percent-encoding` };
  }
  if (!key.startsWith(prefix)) return { wrong: `${name} is not below ${dirUrl}` };
  const rel = entry.isDir ? key.slice(prefix.length).replace(/\/$/, "") : key.slice(prefix.length);
  const segments = rel.split("/");
  if (rel.startsWith("/") || segments.some((s) => s === "" || s === "." || s === "..")) {
    return { wrong: `the key "${key}" would be written outside the output directory (an absolute path, or an empty, "." or ".." segment)` };
  }
  return { path: rel };
}

export interface DirectoryResult {
  files: number;
  bytes: number;
}

/**
 * Downloads every object below `dirUrl` into `outputDir`, which must be a directory. Nothing is
 * downloaded when an entry is refused or an output file exists (without `overwrite`); the first
 * object that fails stops the others from starting and fails the whole, naming the object.
 */
export async function downloadDirectory(dirUrl: string, outputDir: string, f: DirectoryFetcher, opts: { overwrite: boolean; select?: FileSelection | undefined; report?: ((line: string) => void) | undefined; warn: (line: string) => void }): Promise<DirectoryResult> {
  if (!existsSync(outputDir) || !statSync(outputDir).isDirectory()) throw new Error(`output path ${outputDir} is not a directory (a recursive download writes into an existing directory)`);
  const entries = await f.list(dirUrl);
  const listed: Array<{ url: string; path: string; isDir: boolean }> = [];
  for (const e of entries) {
    const p = entryPath(dirUrl, e);
    if ("wrong" in p) throw new Error(`${dirUrl}: ${p.wrong}; nothing was downloaded`);
    listed.push({ url: e.url, path: p.path, isDir: e.isDir });
  }
  let chosen = listed;
  if (opts.select && selects(opts.select)) {
    const kept = selectEntries(listed.filter((e) => !e.isDir).map((e) => e.path), listed.filter((e) => e.isDir).map((e) => e.path), opts.select, dirUrl);
    chosen = listed.filter((e) => (e.isDir ? kept.dirs : kept.files).has(e.path));
  }
  const dirs = chosen.filter((e) => e.isDir).map((e) => join(outputDir, e.path));
  const files = chosen.filter((e) => !e.isDir).map((e) => ({ url: e.url, output: join(outputDir, e.path) }));
  if (!opts.overwrite) {
    const existing = files.filter((x) => existsSync(x.output)).map((x) => x.output);
    if (existing.length > 0) throw new Error(`${dirUrl}: ${existing.length} output file(s) exist, e.g. ${existing[0]}; pass --overwrite to replace them; nothing was downloaded`);
  }
  // A store cannot tell an empty directory from a prefix that names none: said, not failed (as Dragonfly's dfget does).
  if (files.length === 0 && dirs.length === 0) opts.warn(`dfget: ${dirUrl} has no objects; nothing was downloaded`);
  for (const d of dirs) mkdirSync(d, { recursive: true });
  for (const x of files) mkdirSync(join(x.output, ".."), { recursive: true });

  let next = 0;
  let bytes = 0;
  let failure: Error | undefined;
  const worker = async () => {
    while (failure === undefined && next < files.length) {
      const x = files[next++]!;
      try {
        bytes += await f.fetch(x.url, x.output);
      } catch (e) {
        // The first failure is the one reported; the objects already in flight finish (their
        // outputs are written whole or not at all).
        failure ??= new Error(`${dirUrl}: ${x.url} failed: ${(e as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DIRECTORY_CONCURRENCY, files.length) }, worker));
  if (failure) throw failure;
  return { files: files.length, bytes };
}
