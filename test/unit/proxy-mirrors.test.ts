// proxy.mirrors (proxy/mirrors.ts): config checks, the prefix-to-upstream mapping with its
// refusal of paths that leave the repository, and the layout rules that decide which paths
// are immutable swarm tasks and which are always fetched from the upstream.
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/common/config.js";
import { compileMirrors, isImmutable, mirrorOf, mirrorTarget, parseChecksumFile, type Mirror } from "../../src/daemon/proxy/mirrors.js";
import { ProxyRequestError } from "../../src/daemon/proxy/headers.js";

const [maven, yum] = compileMirrors([
  { prefix: "maven", upstream: "https://repo.example.com/maven2", kind: "maven" },
  { prefix: "/yum/el9/", upstream: "http://127.0.0.1:8080/el9/", kind: "yum" },
]) as [Mirror, Mirror];

const immutable = (m: Mirror, rel: string) => isImmutable(m, new URL(rel, m.upstream));

describe("proxy.mirrors", () => {
  it("normalises prefixes and upstreams to directories", () => {
    expect(maven.prefix).toBe("/maven/");
    expect(maven.upstream.href).toBe("https://repo.example.com/maven2/");
    expect(yum.prefix).toBe("/yum/el9/");
  });

  it("refuses bad entries, naming the key", () => {
    const bad = (prefix: string, upstream: string) => () => compileMirrors([{ prefix, upstream, kind: "maven" }]);
    expect(bad("/", "https://r.example")).toThrow(ConfigError);
    expect(bad("/v2/x", "https://r.example")).toThrow(/proxy\.mirrors\.0\.prefix/);
    expect(bad("/a/../b", "https://r.example")).toThrow(/dot segments/);
    expect(bad("/m", "ftp://r.example/")).toThrow(/proxy\.mirrors\.0\.upstream: only http and https/);
    expect(bad("/m", "https://u:p@r.example/")).toThrow(/no credentials/);
    expect(bad("/m", "not a url")).toThrow(/is not a URL/);
    expect(() =>
      compileMirrors([
        { prefix: "/m", upstream: "https://a.example", kind: "maven" },
        { prefix: "/m/x", upstream: "https://b.example", kind: "yum" },
      ]),
    ).toThrow(/proxy\.mirrors\.1\.prefix: "\/m\/x\/" overlaps "\/m\/"/);
  });

  it("maps a request under a prefix to the upstream, query kept", () => {
    expect(mirrorTarget([maven, yum], "/maven/org/x/a/1.0/a-1.0.jar?t=1")?.url.href).toBe("https://repo.example.com/maven2/org/x/a/1.0/a-1.0.jar?t=1");
    expect(mirrorTarget([maven, yum], "/yum/el9/repodata/repomd.xml")?.mirror).toBe(yum);
    expect(mirrorTarget([maven, yum], "/v2/library/alpine/manifests/3")).toBeUndefined();
    expect(mirrorTarget([maven, yum], "/mavenx/a")).toBeUndefined();
  });

  it("refuses paths that dot segments take out of the repository", () => {
    for (const raw of ["/maven/../x", "/maven/%2e%2e/x", "/maven/a/../../x", "/maven/%2E%2E/%2e%2e/etc/passwd", "/maven/http://evil.example/x", "/maven//evil.example/x"]) {
      let target: URL | undefined;
      try {
        target = mirrorTarget([maven], raw)?.url;
      } catch (e) {
        expect(e, raw).toBeInstanceOf(ProxyRequestError);
        continue;
      }
      // Not refused: then it must still be inside the repository.
      expect(target?.href.startsWith(maven.upstream.href), `${raw} → ${target?.href}`).toBe(true);
    }
    expect(() => mirrorTarget([maven], "/maven/../x")).toThrow(/leaves the repository mirrored at \/maven\//);
  });

  it("finds the mirror of a forward-proxy URL by its upstream", () => {
    expect(mirrorOf([maven, yum], new URL("https://repo.example.com/maven2/org/x/a/1.0/a-1.0.jar"))).toBe(maven);
    expect(mirrorOf([maven, yum], new URL("https://repo.example.com/other/a.jar"))).toBeUndefined();
    expect(mirrorOf([maven, yum], new URL("http://repo.example.com/maven2/a.jar"))).toBeUndefined();
  });

  it("shares release artifacts of the Maven layout and nothing else", () => {
    for (const p of ["org/x/a/1.0/a-1.0.jar", "org/x/a/1.0/a-1.0.pom", "org/x/a/1.0/a-1.0-sources.jar", "org/x/a/1.0/a-1.0-linux-x86_64.tar.gz"]) expect(immutable(maven, p), p).toBe(true);
    for (const p of [
      "org/x/a/maven-metadata.xml",
      "org/x/a/maven-metadata.xml.sha1",
      "org/x/a/1.0/a-1.0.jar.sha1",
      "org/x/a/1.0/a-1.0.jar.md5",
      "org/x/a/1.0/a-1.0.jar.sha256",
      "org/x/a/1.0/a-1.0.jar.asc",
      "org/x/a/1.0-SNAPSHOT/a-1.0-20261207.120000-1.jar",
      "org/x/a/1.0-SNAPSHOT/maven-metadata.xml",
      "org/x/a/1.0/other-1.0.jar",
      "org/x/a/1.0/",
      "archetype-catalog.xml",
      "a/1.0/a-1.0.jar",
      ".index/nexus-maven-repository-index.gz",
      "org/x/a/1.0/a-1.0.jar/../a-1.0.jar%ZZ",
    ]) {
      expect(immutable(maven, p), p).toBe(false);
    }
  });

  it("shares RPMs and never repodata in a YUM repository", () => {
    expect(immutable(yum, "Packages/t/tiny-1.0-1.noarch.rpm")).toBe(true);
    expect(immutable(yum, "tiny-1.0-1.x86_64.rpm")).toBe(true);
    expect(immutable(yum, "drpms/tiny-1.0-1_1.1-1.noarch.drpm")).toBe(true);
    for (const p of ["repodata/repomd.xml", "repodata/repomd.xml.asc", "repodata/abc-primary.xml.gz", "repodata/odd.rpm", ".treeinfo", "images/boot.iso", "Packages/"]) expect(immutable(yum, p), p).toBe(false);
  });

  it("reads a checksum file's hex, with or without a file name", () => {
    const hex = "a".repeat(40);
    expect(parseChecksumFile(`${hex}\n`, 40)).toBe(hex);
    expect(parseChecksumFile(`${hex.toUpperCase()}  a-1.0.jar\n`, 40)).toBe(hex);
    expect(parseChecksumFile("<html>not found</html>", 40)).toBeUndefined();
    expect(parseChecksumFile("a".repeat(64), 40)).toBeUndefined();
  });
});
