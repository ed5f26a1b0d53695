// Maven and YUM repositories for the proxy's repository-mirror tests: a static file server on
// 127.0.0.1 that counts the GETs it answered per path (so a test can tell swarm from origin),
// a Maven repository layout written file by file (jar, pom, maven-metadata.xml, .sha1 files),
// an RPM built by the real `rpmbuild` with repodata from the real `createrepo_c`, and a runner
// for the real `mvn` and `dnf`. A missing tool is an error (ENOENT), never a skip.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, createReadStream, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join, normalize } from "node:path";
import { crc32 } from "node:zlib";

export interface RepoServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** The directory served. */
  root: string;
  /** GETs answered with content (200/206), by URL path. */
  served: Map<string, number>;
  /** Body bytes sent, by URL path (a back-to-source probe of `bytes=0-0` counts 1). */
  bytes: Map<string, number>;
  /** GETs answered 404, by URL path. */
  missing: Map<string, number>;
  /** Every request as "METHOD path [range] status", for failure messages. */
  log: string[];
  close(): Promise<void>;
}

/** Serves the files under `root` (single Range supported, as origins of artifacts do). */
export async function startRepoServer(root: string): Promise<RepoServer> {
  const served = new Map<string, number>();
  const missing = new Map<string, number>();
  const log: string[] = [];
  const bytes = new Map<string, number>();
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0] ?? "/");
    res.on("finish", () => log.push(`${req.method} ${path} ${req.headers.range ?? ""} ${res.statusCode} ${req.headers["user-agent"] ?? ""}`));
    const file = join(root, normalize(path));
    let size: number;
    let mtime: Date;
    try {
      const st = statSync(file);
      if (!st.isFile()) throw new Error("not a file");
      size = st.size;
      mtime = st.mtime;
    } catch {
      if (req.method === "GET") bump(missing, path);
      return res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
    const headers: Record<string, string | number> = { "content-type": "application/octet-stream", "last-modified": mtime.toUTCString(), "accept-ranges": "bytes" };
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    let [start, end, status] = [0, size - 1, 200];
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      if (start > end) return res.writeHead(416, { "content-range": `bytes */${size}` }).end();
      status = 206;
      headers["content-range"] = `bytes ${start}-${end}/${size}`;
    }
    headers["content-length"] = end - start + 1;
    res.writeHead(status, headers);
    if (req.method !== "GET") return res.end();
    bump(served, path);
    bytes.set(path, (bytes.get(path) ?? 0) + end - start + 1);
    if (size === 0) return res.end();
    createReadStream(file, { start, end }).pipe(res);
  };
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    root,
    served,
    bytes,
    missing,
    log,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const sha1 = (b: Buffer | string) => createHash("sha1").update(b).digest("hex");

/** A jar: a zip of stored (uncompressed) entries, which is all a class loader needs. */
export function tinyJar(files: Record<string, string>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, text] of Object.entries(files)) {
    const data = Buffer.from(text);
    const n = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(10, 4); // version needed
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(10, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, n, data);
    centrals.push(central, n);
    offset += local.length + n.length + data.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

function writeWithSha1(path: string, content: Buffer | string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  writeFileSync(`${path}.sha1`, sha1(content));
}

export interface MavenCoordinates {
  groupId: string;
  artifactId: string;
  version: string;
  /** `<dependency>` elements of the pom, as XML. */
  dependencies?: string;
}

/** The directory of an artifact's version in a repository layout. */
export function artifactDir(root: string, c: MavenCoordinates): string {
  return join(root, ...c.groupId.split("."), c.artifactId, c.version);
}

/** Writes `<a>-<v>.pom` and `<a>-<v>.jar` with their .sha1 files; returns the jar's bytes. */
export function writeMavenArtifact(root: string, c: MavenCoordinates): Buffer {
  const dir = artifactDir(root, c);
  const pom = `<project><modelVersion>4.0.0</modelVersion><groupId>${c.groupId}</groupId><artifactId>${c.artifactId}</artifactId><version>${c.version}</version><dependencies>${c.dependencies ?? ""}</dependencies></project>\n`;
  const jar = tinyJar({ [`META-INF/${c.artifactId}.txt`]: `${c.groupId}:${c.artifactId}:${c.version}\n` });
  writeWithSha1(join(dir, `${c.artifactId}-${c.version}.pom`), pom);
  writeWithSha1(join(dir, `${c.artifactId}-${c.version}.jar`), jar);
  return jar;
}

/** `<group>/<artifact>/maven-metadata.xml` listing `versions` (the last is the latest), with its .sha1. */
export function writeMavenMetadata(root: string, groupId: string, artifactId: string, versions: string[]): void {
  const latest = versions.at(-1) ?? "";
  const xml = `<metadata><groupId>${groupId}</groupId><artifactId>${artifactId}</artifactId><versioning><latest>${latest}</latest><release>${latest}</release><versions>${versions.map((v) => `<version>${v}</version>`).join("")}</versions><lastUpdated>20261207000000</lastUpdated></versioning></metadata>\n`;
  writeWithSha1(join(root, ...groupId.split("."), artifactId, "maven-metadata.xml"), xml);
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (a missing binary rejects with ENOENT). */
export function run(cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: o.env ?? process.env, cwd: o.cwd, timeout: o.timeoutMs ?? 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      // Not started (ENOENT: the tool is missing) or killed by the timeout.
      if (err && typeof err.code !== "number") return reject(new Error(`${cmd}: ${err.message}`, { cause: err }));
      resolve({ code: typeof err?.code === "number" ? err.code : 0, stdout, stderr });
    });
  });
}

/**
 * Builds a noarch RPM `<name>-<version>-1.noarch.rpm` in `work` with the real rpmbuild (its
 * database and macros kept inside `work`, nothing in $HOME) and copies it into `repo`.
 */
export async function buildRpm(work: string, repo: string, name: string, version: string): Promise<string> {
  const top = join(work, "rpmbuild");
  mkdirSync(join(top, "SPECS"), { recursive: true });
  const spec = join(top, "SPECS", `${name}.spec`);
  writeFileSync(
    spec,
    [
      `Name: ${name}`,
      `Version: ${version}`,
      "Release: 1",
      "Summary: damselfly proxy test package",
      "License: MIT",
      "BuildArch: noarch",
      "%description",
      "A package the proxy's YUM mirror test installs.",
      "%install",
      `mkdir -p %{buildroot}/usr/share/${name}`,
      `echo ${name}-${version} > %{buildroot}/usr/share/${name}/version.txt`,
      "%files",
      `/usr/share/${name}/version.txt`,
      "",
    ].join("\n"),
  );
  const env = { ...process.env, HOME: work };
  const r = await run("rpmbuild", ["-bb", "--quiet", "--define", `_topdir ${top}`, "--define", `_dbpath ${join(work, "rpmdb")}`, spec], { env });
  if (r.code !== 0) throw new Error(`rpmbuild failed (${r.code}): ${r.stderr}`);
  const file = `${name}-${version}-1.noarch.rpm`;
  const built = join(top, "RPMS", "noarch", file);
  mkdirSync(repo, { recursive: true });
  copyFileSync(built, join(repo, file));
  return file;
}

/** repodata/ for the RPMs in `repo`, by the real createrepo_c. */
export async function createRepo(repo: string): Promise<string[]> {
  const r = await run("createrepo_c", ["--quiet", repo]);
  if (r.code !== 0) throw new Error(`createrepo_c failed (${r.code}): ${r.stderr}`);
  return readdirSync(join(repo, "repodata"));
}
