// The previous release of Damselfly, built from this clone's git history for the version-skew
// test: the pinned commit is unpacked (git archive) into a temporary directory, installed
// (npm ci, whose prepare step builds the Rust core and dist/), and moved to a cache outside the
// clone, so only the first run on a host pays for the build. A clone without that history
// (shallow, or the commit missing) cannot run the test: it throws, naming the fix.
import { spawnSync, type SpawnSyncOptions } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The last released state: 6b4bfd8 is main's last commit before this wave's work began (wave 1
 * ended there on 2026-11-27; wave 2 started 2026-12-06 with 50cbfb2), and the commit this
 * wave's benchmarks compare against (288b871).
 */
export const PREVIOUS_RELEASE = "6b4bfd8dbb0126102ba8b9a8fc17813f6072ad42";
/** Built releases, one directory per commit; DAMSELFLY_RELEASE_CACHE moves it. */
export const RELEASE_CACHE = process.env.DAMSELFLY_RELEASE_CACHE ?? "/var/cache/damselfly/releases";
/** Written last: a directory without it is a build that did not finish. */
const COMPLETE = ".damselfly-release-complete";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));

function run(cmd: string, args: string[], opts: SpawnSyncOptions & { what: string }): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 256 << 20, ...opts });
  if (r.error) throw new Error(`${opts.what}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${opts.what}: ${cmd} ${args.join(" ")} exited ${r.status ?? r.signal}\n${String(r.stderr ?? "").slice(-4000)}`);
  return String(r.stdout ?? "");
}

/** Throws unless this clone holds `sha` (a shallow clone or a fetch without history does not). */
function requireHistory(sha: string): void {
  const git = (args: string[]) => spawnSync("git", ["-C", repoRoot, ...args], { encoding: "utf8" });
  const shallow = git(["rev-parse", "--is-shallow-repository"]);
  if (shallow.status !== 0) throw new Error(`version skew: ${repoRoot} is not a git clone (${shallow.stderr.trim()}); the previous release ${sha} is built from the clone's history`);
  const present = git(["cat-file", "-e", `${sha}^{commit}`]).status === 0;
  if (!present) {
    const hint = shallow.stdout.trim() === "true" ? "this clone is shallow: run `git fetch --unshallow`" : "fetch the full history of main";
    throw new Error(`version skew: the previous release ${sha} is not in this clone's history (${hint}); the test builds that release from git and cannot run without it`);
  }
}

/**
 * The directory of the previous release, ready to run (bin/dfdaemon.js with dist/ and the
 * native addon), building it on the first call on this host. `log` hears about a build.
 */
export function previousRelease(log: (m: string) => void = () => undefined, sha = PREVIOUS_RELEASE): string {
  const dir = join(RELEASE_CACHE, sha);
  if (existsSync(join(dir, COMPLETE))) return dir;
  requireHistory(sha);
  mkdirSync(RELEASE_CACHE, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), `damselfly-release-${sha.slice(0, 12)}-`));
  try {
    const src = join(work, "src");
    mkdirSync(src);
    log(`version skew: building the previous release ${sha.slice(0, 12)} in ${src} (npm ci and the Rust core: minutes, once per host)`);
    const started = Date.now();
    const tar = join(work, "release.tar");
    run("git", ["-C", repoRoot, "archive", "--format=tar", "-o", tar, sha], { what: "git archive of the previous release" });
    run("tar", ["-xf", tar, "-C", src], { what: "unpacking the previous release" });
    // npm ci's prepare step builds the Rust core (release) and dist/, as for a user's install;
    // its own target directory, not this clone's.
    const env: NodeJS.ProcessEnv = { ...process.env, CARGO_TARGET_DIR: join(work, "target") };
    run("npm", ["ci", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: src, env, what: `npm ci of the previous release ${sha.slice(0, 12)}` });
    for (const f of ["bin/dfdaemon.js", "dist/cli/dfdaemon.js"]) if (!existsSync(join(src, f))) throw new Error(`version skew: the build of ${sha.slice(0, 12)} has no ${f}`);
    // Another run may have finished first: its copy is as good as ours.
    if (!existsSync(join(dir, COMPLETE))) {
      rmSync(dir, { recursive: true, force: true });
      try {
        renameSync(src, dir);
      } catch {
        cpSync(src, dir, { recursive: true, verbatimSymlinks: true });
      }
      writeFileSync(join(dir, COMPLETE), `${sha}\nbuilt ${new Date().toISOString()} in ${Math.round((Date.now() - started) / 1000)} s\n`);
    }
    log(`version skew: previous release ${sha.slice(0, 12)} built in ${Math.round((Date.now() - started) / 1000)} s, cached in ${dir}`);
    return dir;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
