// hdfs:// URLs (issue 23): Dragonfly's form mapped to WebHDFS requests, the delegation token
// kept out of the URL, directory URLs and their entries' URLs, and dfget's flag.
import { describe, expect, it } from "vitest";
import { hdfsOf } from "../../src/cli/hdfs-flags.js";
import { entryPath } from "../../src/cli/dfget-directory.js";
import { hdfsChildUrl, parseHdfsDirectoryUrl, parseHdfsFileUrl, parseHdfsUrl, webHdfsUrl } from "../../src/daemon/backend/hdfs-url.js";

describe("parseHdfsUrl", () => {
  it("maps the host and port to the namenode's WebHDFS endpoint, 9870 by default", () => {
    expect(parseHdfsUrl("hdfs://namenode:50070/data/model.bin")).toEqual({ endpoint: "http://namenode:50070", path: "/data/model.bin" });
    expect(parseHdfsUrl("hdfs://namenode/data/model.bin")).toEqual({ endpoint: "http://namenode:9870", path: "/data/model.bin" });
    expect(parseHdfsUrl("hdfs://10.0.0.5/x").endpoint).toBe("http://10.0.0.5:9870");
    expect(parseHdfsUrl("hdfs://[::1]:9871/x").endpoint).toBe("http://[::1]:9871");
  });

  it("percent-decodes the path; the root and directories end with a slash", () => {
    expect(parseHdfsUrl("hdfs://nn/dir/my%20file.bin").path).toBe("/dir/my file.bin");
    expect(parseHdfsUrl("hdfs://nn").path).toBe("/");
    expect(parseHdfsDirectoryUrl("hdfs://nn/").path).toBe("/");
    expect(parseHdfsDirectoryUrl("hdfs://nn/a/b/").path).toBe("/a/b/");
  });

  it("refuses other schemes, no namenode, credentials, queries, bad encoding and dot segments", () => {
    expect(() => parseHdfsUrl("webhdfs://nn/x")).toThrow(/not an hdfs:\/\/ URL/);
    expect(() => parseHdfsUrl("hdfs:///x")).toThrow(/no namenode/);
    expect(() => parseHdfsUrl("hdfs://nn/x?delegation=abc")).toThrow(/has no query/);
    expect(() => parseHdfsUrl("hdfs://nn/a%E0%A4")).toThrow(/not valid percent-encoding/);
    // The URL parser resolves "..", "%2E%2E" too; a ".." that only decoding reveals is refused.
    expect(() => parseHdfsUrl("hdfs://nn/a/..%2F/b")).toThrow(/"\." or "\.\." segment/);
    let err: Error | undefined;
    try {
      parseHdfsUrl("hdfs://user:topsecret@nn/x");
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(/credentials do not belong in the URL/);
    expect(err?.message).not.toContain("topsecret");
  });

  it("tells files from directories by the trailing slash", () => {
    expect(() => parseHdfsFileUrl("hdfs://nn/dir/")).toThrow(/names a directory/);
    expect(() => parseHdfsFileUrl("hdfs://nn/dir%2F")).toThrow(/names a directory/);
    expect(() => parseHdfsDirectoryUrl("hdfs://nn/dir/f.bin")).toThrow(/names a file/);
  });
});

describe("webHdfsUrl", () => {
  it("puts the path under /webhdfs/v1 with each segment encoded, and the op and parameters in the query", () => {
    const h = parseHdfsUrl("hdfs://nn:9870/data/my%20model/w%23eights.bin");
    expect(webHdfsUrl(h, "OPEN", { offset: 4194304, length: 4194304 })).toBe("http://nn:9870/webhdfs/v1/data/my%20model/w%23eights.bin?op=OPEN&offset=4194304&length=4194304");
    expect(webHdfsUrl(h, "GETFILESTATUS")).toBe("http://nn:9870/webhdfs/v1/data/my%20model/w%23eights.bin?op=GETFILESTATUS");
  });

  it("carries the delegation token as WebHDFS's delegation parameter", () => {
    const u = new URL(webHdfsUrl(parseHdfsUrl("hdfs://nn/f"), "OPEN", { offset: 0 }, "tok+en/="));
    expect(u.searchParams.get("delegation")).toBe("tok+en/=");
    expect(u.searchParams.get("op")).toBe("OPEN");
  });

  it("lists a directory by its name without the trailing slash; the root stays /", () => {
    expect(webHdfsUrl(parseHdfsDirectoryUrl("hdfs://nn/a/b/"), "LISTSTATUS_BATCH")).toBe("http://nn:9870/webhdfs/v1/a/b?op=LISTSTATUS_BATCH");
    expect(webHdfsUrl(parseHdfsDirectoryUrl("hdfs://nn/"), "LISTSTATUS_BATCH")).toBe("http://nn:9870/webhdfs/v1/?op=LISTSTATUS_BATCH");
  });
});

describe("hdfsChildUrl", () => {
  it("builds entry URLs as text, the name encoded, that dfget maps back to their relative paths", () => {
    const dir = "hdfs://nn:9870/data/";
    const file = hdfsChildUrl(dir, "part 1.bin", false);
    const sub = hdfsChildUrl(dir, "shards", true);
    expect(file).toBe("hdfs://nn:9870/data/part%201.bin");
    expect(sub).toBe("hdfs://nn:9870/data/shards/");
    expect(parseHdfsFileUrl(file).path).toBe("/data/part 1.bin");
    expect(entryPath(dir, { url: file, contentLength: 1, isDir: false })).toEqual({ path: "part 1.bin" });
    expect(entryPath(dir, { url: hdfsChildUrl(sub, "x", false), contentLength: 1, isDir: false })).toEqual({ path: "shards/x" });
    expect(entryPath(dir, { url: sub, contentLength: 0, isDir: true })).toEqual({ path: "shards" });
  });
});

describe("hdfsOf (dfget --hdfs-delegation-token)", () => {
  it("fills the download's HDFS options for hdfs:// URLs only", () => {
    expect(hdfsOf("hdfs://nn/f", { hdfsDelegationToken: "t" })).toEqual({ delegationToken: "t" });
    expect(hdfsOf("hdfs://nn/f", {})).toEqual({ delegationToken: undefined });
    expect(hdfsOf("s3://b/k", { hdfsDelegationToken: "t" })).toBeUndefined();
    expect(hdfsOf("https://example.com/f", { hdfsDelegationToken: "t" })).toBeUndefined();
  });
});
