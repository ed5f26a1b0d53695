// The proxy as a Maven and a YUM/DNF repository mirror (proxy.mirrors, issue 23), with the real
// clients: `mvn` resolves a build extension and its version-ranged dependency, `dnf` downloads
// an RPM, each first through peer A and then, with its own empty cache, through peer B, in a
// swarm of a seed peer and the two under our scheduler. The origin (a counting file server on
// 127.0.0.1) serves each artifact and RPM once, and the metadata (maven-metadata.xml, repodata/)
// to every client: the peers carry `rules: [.*]` to show that no rule sends metadata to the
// swarm. Then the bad inputs the proxy can tell: an upstream 404 passed on and not cached, an
// artifact that does not match the repository's .sha1 refused and not kept, a path that leaves
// the mirrored repository.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { startDaemon, type DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { artifactDir, buildRpm, createRepo, run, startRepoServer, tinyJar, writeMavenArtifact, writeMavenMetadata, type RepoServer } from "../helpers/package-repos.js";
import { cleanupTempDirs, startTestDaemon, startTestScheduler, tempDir, testDaemonConfig } from "../helpers/swarm.js";
import { get } from "./proxy-fixtures.js";

const EXT = { groupId: "com.example", artifactId: "ext", version: "1.0", dependencies: "<dependency><groupId>com.example</groupId><artifactId>lib</artifactId><version>[1.0,2.0)</version></dependency>" };
const LIB = (version: string) => ({ groupId: "com.example", artifactId: "lib", version });
// Maven gives a build extension that does not depend on plexus-utils version 1.1 of it (the jar
// alone: mvn asks for no pom of it).
const PLEXUS = { groupId: "org.codehaus.plexus", artifactId: "plexus-utils", version: "1.1" };
const RPM = "damselfly-tiny";

describe("proxy as a Maven and YUM mirror", () => {
  let origin: RepoServer;
  let maven2: string;
  let yum: string;
  let rpmFile: string;
  let scheduler: SchedulerHandle;
  let seed: DaemonHandle;
  let peerA: DaemonHandle;
  let peerB: DaemonHandle;
  const jars = new Map<string, Buffer>();

  beforeAll(async () => {
    const root = tempDir("package-repos");
    maven2 = join(root, "maven2");
    yum = join(root, "yum");
    for (const c of [EXT, LIB("1.0"), PLEXUS]) jars.set(`${c.artifactId}-${c.version}`, writeMavenArtifact(maven2, c));
    writeMavenMetadata(maven2, "com.example", "lib", ["1.0"]);
    rpmFile = await buildRpm(tempDir("rpmbuild"), yum, RPM, "1.0");
    await createRepo(yum);
    origin = await startRepoServer(root);
    scheduler = await startTestScheduler();
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    seed = await startTestDaemon({ name: "repo-seed", schedulers: [addr], seed: true });
    const proxy = {
      server: { ip: "127.0.0.1", port: 0 },
      // Matches everything: the mirrors' own layout rules must win for their requests.
      rules: [{ regex: ".*" }],
      mirrors: [
        { prefix: "/maven/", upstream: `${origin.url}/maven2/`, kind: "maven" },
        { prefix: "/yum/tiny", upstream: `${origin.url}/yum`, kind: "yum" },
      ],
    };
    peerA = await startDaemon(testDaemonConfig({ name: "repo-peer-a", schedulers: [addr], overrides: { proxy } }), silentLogger());
    peerB = await startDaemon(testDaemonConfig({ name: "repo-peer-b", schedulers: [addr], overrides: { proxy } }), silentLogger());
  }, 180_000);

  afterAll(async () => {
    for (const d of [peerA, peerB, seed]) await d?.close();
    await scheduler?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  const servedOf = (path: string) => origin.served.get(path) ?? 0;
  /**
   * The origin sent a file's content once (whatever its per-peer `bytes=0-0` length probes
   * added): at least its size, less than twice.
   */
  const sentOnce = (path: string) => {
    const size = statSync(join(origin.root, path)).size;
    const sent = origin.bytes.get(path) ?? 0;
    expect(sent, `${path}: ${sent} bytes sent for ${size}\n${origin.log.filter((l) => l.includes(path)).join("\n")}`).toBeGreaterThanOrEqual(size);
    expect(sent, `${path}: ${sent} bytes sent for ${size}\n${origin.log.filter((l) => l.includes(path)).join("\n")}`).toBeLessThan(2 * size);
  };
  const mavenPath = (c: { groupId: string; artifactId: string; version: string }, ext: string) => `/maven2/${c.groupId.replaceAll(".", "/")}/${c.artifactId}/${c.version}/${c.artifactId}-${c.version}.${ext}`;

  /** `mvn validate` of a project whose build extension is EXT, with mvn's mirror at the peer's proxy. */
  async function mvn(port: number): Promise<string> {
    const dir = tempDir("mvn");
    const settings = join(dir, "settings.xml");
    writeFileSync(settings, `<settings><mirrors><mirror><id>damselfly</id><mirrorOf>*</mirrorOf><url>http://127.0.0.1:${port}/maven/</url></mirror></mirrors></settings>\n`);
    mkdirSync(join(dir, "project"));
    writeFileSync(
      join(dir, "project", "pom.xml"),
      `<project><modelVersion>4.0.0</modelVersion><groupId>t</groupId><artifactId>p</artifactId><version>1</version><packaging>pom</packaging><build><extensions><extension><groupId>${EXT.groupId}</groupId><artifactId>${EXT.artifactId}</artifactId><version>${EXT.version}</version></extension></extensions></build></project>\n`,
    );
    const local = join(dir, "m2");
    // -C: a checksum that does not match fails the build, so bytes from the swarm are checked.
    const r = await run("mvn", ["-B", "-q", "-C", "-s", settings, `-Dmaven.repo.local=${local}`, "-f", join(dir, "project", "pom.xml"), "validate"], { env: { ...process.env, HOME: dir } });
    expect(r.code, `mvn failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    return local;
  }

  it("mvn resolves through peer A, then through peer B with the artifacts from the swarm and fresh metadata", async () => {
    const localA = await mvn(peerA.proxyPort);
    expect(readFileSync(join(artifactDir(localA, LIB("1.0")), "lib-1.0.jar")).equals(jars.get("lib-1.0") ?? Buffer.alloc(0))).toBe(true);
    // lib 1.1 is published between the builds: peer B's client must see the new metadata.
    jars.set("lib-1.1", writeMavenArtifact(maven2, LIB("1.1")));
    writeMavenMetadata(maven2, "com.example", "lib", ["1.0", "1.1"]);
    const localB = await mvn(peerB.proxyPort);
    for (const c of [EXT, PLEXUS]) {
      const key = `${c.artifactId}-${c.version}`;
      expect(readFileSync(join(artifactDir(localB, c), `${key}.jar`)).equals(jars.get(key) ?? Buffer.alloc(0))).toBe(true);
      // Once for both clients: peer B got them from the swarm.
      sentOnce(mavenPath(c, "jar"));
    }
    sentOnce(mavenPath(EXT, "pom"));
    expect(readFileSync(join(artifactDir(localB, LIB("1.1")), "lib-1.1.jar")).equals(jars.get("lib-1.1") ?? Buffer.alloc(0))).toBe(true);
    expect(existsSync(join(artifactDir(localB, LIB("1.0")), "lib-1.0.jar"))).toBe(false);
    sentOnce(mavenPath(LIB("1.0"), "jar"));
    sentOnce(mavenPath(LIB("1.1"), "jar"));
    // Metadata and checksums are never swarm tasks: every client's request reached the origin.
    expect(servedOf("/maven2/com/example/lib/maven-metadata.xml")).toBe(2);
    expect(servedOf(`${mavenPath(EXT, "jar")}.sha1`)).toBeGreaterThanOrEqual(2);
  }, 300_000);

  /** `dnf install --downloadonly` of the test package, everything dnf writes inside `dir`. */
  async function dnf(port: number): Promise<Buffer> {
    const dir = tempDir("dnf");
    const [installroot, reposdir, cachedir, out] = ["root", "repos", "cache", "out"].map((d) => join(dir, d)) as [string, string, string, string];
    for (const d of [installroot, reposdir, cachedir]) mkdirSync(d);
    writeFileSync(join(reposdir, "tiny.repo"), `[tiny]\nname=tiny\nbaseurl=http://127.0.0.1:${port}/yum/tiny/\ngpgcheck=0\nmetadata_expire=0\n`);
    const conf = join(dir, "dnf.conf");
    writeFileSync(conf, `[main]\ngpgcheck=0\nreposdir=${reposdir}\ncachedir=${cachedir}\ninstall_weak_deps=0\n`);
    const args = ["-y", "-q", "-c", conf, `--installroot=${installroot}`, "--releasever=1", `--setopt=reposdir=${reposdir}`, `--setopt=cachedir=${cachedir}`, "install", "--downloadonly", `--downloaddir=${out}`, RPM];
    const r = await run("dnf", args, { env: { ...process.env, HOME: dir } });
    expect(r.code, `dnf failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    return readFileSync(join(out, rpmFile));
  }

  it("dnf downloads an RPM through peer A, then through peer B from the swarm, repodata from the origin each time", async () => {
    const rpm = readFileSync(join(yum, rpmFile));
    expect((await dnf(peerA.proxyPort)).equals(rpm)).toBe(true);
    expect((await dnf(peerB.proxyPort)).equals(rpm)).toBe(true);
    sentOnce(`/yum/${rpmFile}`);
    expect(servedOf("/yum/repodata/repomd.xml")).toBe(2);
    const primary = [...origin.served.keys()].filter((p) => /^\/yum\/repodata\/.*primary\.xml\.gz$/.test(p));
    expect(primary).toHaveLength(1);
    expect(servedOf(primary[0] ?? "")).toBe(2);
  }, 300_000);

  it("passes an upstream 404 on and does not cache it", async () => {
    const late = { groupId: "com.example", artifactId: "late", version: "1.0" };
    const path = `/maven/com/example/late/1.0/late-1.0.jar`;
    expect((await get(peerA.proxyPort, path)).status).toBe(404);
    const jar = writeMavenArtifact(maven2, late);
    for (const p of [peerA, peerB]) {
      const r = await get(p.proxyPort, path);
      expect(r.status).toBe(200);
      expect(r.body.equals(jar)).toBe(true);
    }
    sentOnce(mavenPath(late, "jar"));
  });

  it("refuses an artifact that does not match the repository's .sha1 and keeps none of it", async () => {
    const bad = { groupId: "com.example", artifactId: "bad", version: "1.0" };
    const jar = writeMavenArtifact(maven2, bad);
    const file = join(artifactDir(maven2, bad), "bad-1.0.jar");
    // Corrupted on the origin after its checksum was published (same length, other bytes).
    writeFileSync(file, tinyJar({ "META-INF/bad.txt": "com.example:bad:1.X\n" }));
    const path = "/maven/com/example/bad/1.0/bad-1.0.jar";
    // The proxy holds the last bytes back until the digest is checked: the client gets a cut
    // connection (here before any byte, the jar being smaller than the held-back part).
    const refused = await get(peerA.proxyPort, path).then(
      (r) => `status ${r.status}, complete: ${r.complete}`,
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    expect(refused).toMatch(/socket hang up|ECONNRESET/);
    // Repaired on the origin: no peer (nor the seed) may serve the corrupt bytes it saw.
    writeFileSync(file, jar);
    for (const p of [peerA, peerB]) {
      const r = await get(p.proxyPort, path);
      expect(r.status).toBe(200);
      expect(r.complete).toBe(true);
      expect(r.body.equals(jar)).toBe(true);
    }
  });

  it("refuses a path that leaves the mirrored repository", async () => {
    expect((await get(peerA.proxyPort, "/maven/%2e%2e/yum/repodata/repomd.xml")).status).toBe(400);
    expect((await get(peerA.proxyPort, "/yum/tiny/../../maven2/com/example/lib/maven-metadata.xml")).status).toBe(400);
  });
});
