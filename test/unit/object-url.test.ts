// Object storage URLs and options (issue 23): Dragonfly's URL forms, the fields each store
// needs, credentials kept out of URLs and scrubbed from texts, and dfget's --storage-* flags.
import { describe, expect, it } from "vitest";
import { objectStorageOf } from "../../src/cli/object-storage-flags.js";
import { checkObjectStorage, objectUrlOf, parseObjectDirectoryUrl, parseObjectUrl, scrub, secretsOf } from "../../src/daemon/backend/object-url.js";

describe("parseObjectUrl", () => {
  it("takes the bucket from the host and the percent-decoded key from the path", () => {
    expect(parseObjectUrl("s3://bucket/dir/my%20file.bin")).toEqual({ scheme: "s3", bucket: "bucket", key: "dir/my file.bin" });
    expect(parseObjectUrl("abs://container/a/b")).toEqual({ scheme: "abs", bucket: "container", key: "a/b" });
    for (const scheme of ["gs", "oss", "obs", "cos"]) expect(parseObjectUrl(`${scheme}://b/k`).scheme).toBe(scheme);
  });

  it("refuses URLs without a bucket or key, directories, queries, other schemes and credentials", () => {
    expect(() => parseObjectUrl("s3:///key")).toThrow(/no bucket/);
    expect(() => parseObjectUrl("s3://bucket/")).toThrow(/no object key/);
    expect(() => parseObjectUrl("s3://bucket/dir/")).toThrow(/names a directory/);
    // The key is percent-decoded before the directory rule: %2F is a slash (the preheat agrees).
    expect(() => parseObjectUrl("s3://bucket/a%2F")).toThrow(/names a directory/);
    expect(() => parseObjectUrl("s3://bucket/a%E0%A4")).toThrow(/not valid percent-encoding/);
    expect(parseObjectUrl("s3://bucket/a%2Fb").key).toBe("a/b");
    expect(() => parseObjectUrl("s3://bucket/k?versionId=1")).toThrow(/has no query/);
    expect(() => parseObjectUrl("ftp://bucket/k")).toThrow(/not an object storage URL/);
    let err: Error | undefined;
    try {
      parseObjectUrl("s3://AKID:topsecret@bucket/k");
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(/credentials do not belong in the URL/);
    expect(err?.message).not.toContain("topsecret");
  });
});

describe("parseObjectDirectoryUrl and objectUrlOf (ListTaskEntries)", () => {
  it("takes a directory's decoded key prefix, the whole bucket included, and refuses an object's URL", () => {
    expect(parseObjectDirectoryUrl("s3://bucket/my%20dir/")).toEqual({ scheme: "s3", bucket: "bucket", prefix: "my dir/" });
    expect(parseObjectDirectoryUrl("gs://bucket/")).toEqual({ scheme: "gs", bucket: "bucket", prefix: "" });
    expect(parseObjectDirectoryUrl("abs://c/a%2F")).toEqual({ scheme: "abs", bucket: "c", prefix: "a/" });
    expect(() => parseObjectDirectoryUrl("s3://bucket/file")).toThrow(/names an object; a directory ends with "\/"/);
    expect(() => parseObjectDirectoryUrl("s3://bucket/d/?x=1")).toThrow(/has no query/);
    expect(() => parseObjectDirectoryUrl("s3://k:s@bucket/d/")).toThrow(/credentials do not belong/);
  });

  it("builds an entry's URL as text, each segment encoded, dot segments kept for dfget to refuse", () => {
    expect(objectUrlOf("s3", "b", "d/part 1.bin")).toBe("s3://b/d/part%201.bin");
    expect(objectUrlOf("gs", "b", "d/../../x")).toBe("gs://b/d/../../x");
    expect(parseObjectUrl(objectUrlOf("s3", "b", "d/100%/a?b#c")).key).toBe("d/100%/a?b#c");
  });
});

describe("checkObjectStorage", () => {
  it("needs what Dragonfly's client needs", () => {
    expect(() => checkObjectStorage("s3://b/k", "s3", undefined)).not.toThrow();
    expect(() => checkObjectStorage("gs://b/k", "gs", {})).not.toThrow();
    expect(() => checkObjectStorage("abs://c/k", "abs", { accessKeyId: "acct", accessKeySecret: "key" })).toThrow(/abs needs endpoint/);
    expect(() => checkObjectStorage("abs://c/k", "abs", { endpoint: "http://127.0.0.1:1/acct" })).toThrow(/account name and key/);
    for (const s of ["oss", "obs", "cos"] as const) expect(() => checkObjectStorage(`${s}://b/k`, s, { accessKeyId: "a", accessKeySecret: "b" })).toThrow(new RegExp(`${s} needs endpoint`));
    expect(() => checkObjectStorage("s3://b/k", "s3", { accessKeyId: "a" })).toThrow(/access key secret/);
    expect(() => checkObjectStorage("s3://b/k", "s3", { endpoint: "not a url" })).toThrow(/invalid storage endpoint/);
    expect(() => checkObjectStorage("s3://b/k", "s3", { endpoint: "ftp://h" })).toThrow(/invalid storage endpoint/);
    expect(() => checkObjectStorage("s3://b/k", "s3", { endpoint: "http://u:p@h" })).toThrow(/carries credentials/);
  });
});

describe("scrub", () => {
  it("removes every secret of the options from a text", () => {
    const os = { accessKeyId: "AKID", accessKeySecret: "the-secret", sessionToken: "the-session", securityToken: "the-sts" };
    expect(scrub("a the-secret b the-session c the-sts", secretsOf(os))).toBe("a [redacted] b [redacted] c [redacted]");
  });
});

describe("dfget --storage-* flags", () => {
  it("fill the download's ObjectStorage for object storage URLs only", () => {
    const flags = { storageRegion: "eu-west-1", storageEndpoint: "http://127.0.0.1:9000", storageAccessKeyId: "id", storageAccessKeySecret: "secret", storageSessionToken: "s", storageSecurityToken: "t", storageCredentialPath: "/k.json", storagePredefinedAcl: "private", storageInsecureSkipVerify: true };
    expect(objectStorageOf("s3://b/k", flags)).toEqual({ region: "eu-west-1", endpoint: "http://127.0.0.1:9000", accessKeyId: "id", accessKeySecret: "secret", sessionToken: "s", securityToken: "t", credentialPath: "/k.json", predefinedAcl: "private", insecureSkipVerify: true });
    expect(objectStorageOf("https://example.com/k", flags)).toBeUndefined();
    expect(objectStorageOf("gs://b/k", {})?.insecureSkipVerify).toBeUndefined();
  });
});
