// Which entries of a `dfget -r` listing are downloaded (issue 23): `--include-files GLOB`
// (Dragonfly's dfget `-I/--include-files`, repeatable) and, beyond Dragonfly, `--exclude-files
// GLOB` (repeatable, applied after the includes).
//
// Dragonfly's dfget takes each include as a path relative to the directory URL: a pattern ending
// in "/" is a directory and everything below it, any other one file (it checks the pattern is a
// valid glob and a plain relative path, then joins it to the URL). Here the patterns are real
// globs over the same relative paths (percent-decoded, "/"-separated, as dfget-directory.ts's
// entryPath() gives them), so Dragonfly's literal forms select the same files: `*` and `?` stay
// within one segment, `**` spans segments, `{a,b}` and `[...]` as in a shell; dot files match
// like any other (a hub repository's `.gitattributes` is a file like the others); a trailing "/"
// still means the directory's whole subtree. A leading "!" or "#" is a literal character (excludes
// have their own flag).
//
// A pattern that selects nothing is a typo or a wrong directory, not an empty wish: the whole
// download is refused naming it, before anything is written.
import { Minimatch } from "minimatch";

export interface FileSelection {
  include: string[];
  exclude: string[];
}

/** Why `pattern` is not a plain relative path (Dragonfly refuses these too), or undefined. */
function patternWrong(pattern: string): string | undefined {
  if (pattern === "") return "is empty";
  if (pattern.startsWith("/")) return "starts with /: patterns are relative to the directory URL";
  const segments = pattern.replace(/\/$/, "").split("/");
  if (segments.some((s) => s === "" || s === "." || s === "..")) return 'has an empty, "." or ".." segment';
  return undefined;
}

interface Compiled {
  pattern: string;
  /** What a file's path is matched with: the pattern; for "dir/", "dir/**". */
  file: Minimatch[];
  /** What a directory's path is matched with: only a directory pattern ("dir/": "dir" and "dir/**") names directories. */
  dir: Minimatch[];
}

function compile(pattern: string, flag: string): Compiled {
  const wrong = patternWrong(pattern);
  if (wrong !== undefined) throw new Error(`${flag} "${pattern}" ${wrong}`);
  const options = { dot: true, nonegate: true, nocomment: true };
  if (!pattern.endsWith("/")) return { pattern, file: [new Minimatch(pattern, options)], dir: [] };
  const below = new Minimatch(`${pattern}**`, options);
  return { pattern, file: [below], dir: [new Minimatch(pattern.slice(0, -1), options), below] };
}

const matchesFile = (c: Compiled, path: string) => c.file.some((m) => m.match(path));
const matchesDir = (c: Compiled, path: string) => c.dir.some((m) => m.match(path));

/** Every directory that holds one of `paths` ("a/b/c" → "a", "a/b"). */
function ancestors(paths: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const p of paths) for (let i = p.indexOf("/"); i >= 0; i = p.indexOf("/", i + 1)) out.add(p.slice(0, i));
  return out;
}

/** Checks the patterns' form (before anything is listed); throws naming the first bad one. */
export function checkSelection(s: FileSelection): void {
  for (const p of s.include) compile(p, "--include-files");
  for (const p of s.exclude) compile(p, "--exclude-files");
}

/** Whether a selection filters anything at all. */
export function selects(s: FileSelection): boolean {
  return s.include.length > 0 || s.exclude.length > 0;
}

/**
 * The entries of a listing that the selection keeps, given their relative paths: the files some
 * include matches (all when none is given), less those some exclude matches; the directories
 * that hold a kept file, and the empty ones that directory patterns keep the same way. Throws
 * naming a pattern that matches no entry of the listing, or when nothing is left.
 */
export function selectEntries(files: readonly string[], dirs: readonly string[], s: FileSelection, dirUrl: string): { files: Set<string>; dirs: Set<string> } {
  const include = s.include.map((p) => compile(p, "--include-files"));
  const exclude = s.exclude.map((p) => compile(p, "--exclude-files"));
  for (const [flag, list] of [["--include-files", include], ["--exclude-files", exclude]] as const) {
    for (const c of list) {
      if (files.some((p) => matchesFile(c, p)) || dirs.some((d) => matchesDir(c, d))) continue;
      // A directory named without its "/" matches no file: say how to name it.
      const isDir = !c.pattern.endsWith("/") && files.some((p) => p.startsWith(`${c.pattern}/`));
      throw new Error(`${dirUrl}: ${flag} "${c.pattern}" matches no file${isDir ? ` (it is a directory: "${c.pattern}/" selects everything below it)` : ""}; nothing was downloaded`);
    }
  }
  const included = include.length === 0 ? files : files.filter((p) => include.some((c) => matchesFile(c, p)));
  const kept = new Set(included.filter((p) => !exclude.some((c) => matchesFile(c, p))));
  const holding = ancestors(kept);
  const full = ancestors(files);
  const keepEmpty = (d: string) => !full.has(d) && (include.length === 0 || include.some((c) => matchesDir(c, d))) && !exclude.some((c) => matchesDir(c, d));
  const keptDirs = new Set(dirs.filter((d) => holding.has(d) || keepEmpty(d)));
  if (kept.size === 0 && keptDirs.size === 0) {
    const before = include.length === 0 ? `${files.length} file(s) listed` : `${included.length} file(s) --include-files selects`;
    throw new Error(`${dirUrl}: --exclude-files leaves none of the ${before}; nothing was downloaded`);
  }
  return { files: kept, dirs: keptDirs };
}
