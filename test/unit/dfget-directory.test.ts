// dfget -r's mapping of listed entries to output paths (issue 23): each object lands under its
// path relative to the directory URL; a key that would land outside the output directory (an
// absolute path, an empty, "." or ".." segment), or an entry outside the directory, is refused
// by name. The entry URLs are text as the daemon sends them, never normalised first.
import { describe, expect, it } from "vitest";
import { directoryUrl, entryPath } from "../../src/cli/dfget-directory.js";

const file = (url: string) => ({ url, contentLength: 1, isDir: false });

describe("dfget -r entry paths", () => {
  it("makes -r's URL a directory", () => {
    expect(directoryUrl("s3://b/models")).toBe("s3://b/models/");
    expect(directoryUrl("s3://b/models/")).toBe("s3://b/models/");
    expect(directoryUrl("gs://b")).toBe("gs://b/");
  });

  it("takes the percent-decoded path below the directory", () => {
    expect(entryPath("s3://b/models/", file("s3://b/models/shards/part%201.bin"))).toEqual({ path: "shards/part 1.bin" });
    expect(entryPath("s3://b/my%20models/", file("s3://b/my%20models/a"))).toEqual({ path: "a" });
    expect(entryPath("s3://b/", file("s3://b/top.bin"))).toEqual({ path: "top.bin" });
    expect(entryPath("s3://b/d/", { url: "s3://b/d/empty/", contentLength: 0, isDir: true })).toEqual({ path: "empty" });
    // A literal "%2e%2e" in a key is a name, not a parent directory.
    expect(entryPath("s3://b/d/", file("s3://b/d/%252e%252e/x"))).toEqual({ path: "%2e%2e/x" });
  });

  it.each([
    ["s3://b/d/../../etc/passwd", '"d/../../etc/passwd"'],
    ["s3://b/d/%2E%2E/x", '"d/../x"'],
    ["s3://b/d/./x", '"d/./x"'],
    ["s3://b/d//x", '"d//x"'],
    ["s3://b/d/x/..", '"d/x/.."'],
  ])("refuses %s, naming the key", (url, named) => {
    const r = entryPath("s3://b/d/", file(url));
    expect(r).toHaveProperty("wrong");
    expect((r as { wrong: string }).wrong).toContain(named);
    expect((r as { wrong: string }).wrong).toMatch(/outside the output directory/);
  });

  it("refuses entries that are not below the directory", () => {
    expect(entryPath("s3://b/d/", file("s3://other/d/x"))).toEqual({ wrong: '"s3://other/d/x" is not in s3://b/' });
    expect(entryPath("s3://b/d/", file("s3://b/e/x"))).toEqual({ wrong: '"s3://b/e/x" is not below s3://b/d/' });
    expect(entryPath("s3://b/d/", file("s3://b/d/%E0"))).toEqual({ wrong: '"s3://b/d/%E0" is not valid percent-encoding' });
  });
});
