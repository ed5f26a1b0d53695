// Preheat job args for object storage URLs (issue 23): which schemes a file preheat accepts,
// the fields each store needs (Dragonfly's `object_storage` in its JSON form), file:// and
// credential files refused, and the secrets split off before a job is stored and redacted in
// what the API returns.
import { describe, expect, it } from "vitest";
import { parsePreheatArgs, redactArgs } from "../../src/manager/jobs/args.js";
import { refusedArgs } from "../helpers/preheat-args.js";
import { needsSecrets, splitSecrets, toObjectStorage } from "../../src/manager/jobs/object-storage-args.js";

const keys = { access_key_id: "AKIDREADER", access_key_secret: "the-secret-key" };

const refused = refusedArgs;

describe("preheat args: object storage URLs", () => {
  it.each(["s3", "gs"])("accepts %s:// without an endpoint (the provider's own)", (scheme) => {
    const a = parsePreheatArgs({ type: "file", url: `${scheme}://bucket/models/w.bin`, object_storage: { region: "eu-west-1", ...keys } });
    expect(a.url).toBe(`${scheme}://bucket/models/w.bin`);
    expect(a.object_storage).toEqual({ region: "eu-west-1", ...keys });
  });

  it.each(["abs", "oss", "obs", "cos"])("accepts %s:// with an endpoint and keys, and refuses it without an endpoint or keys", (scheme) => {
    const url = `${scheme}://bucket/w.bin`;
    const ok = parsePreheatArgs({ type: "file", urls: [url], object_storage: { endpoint: "https://store.example.com", ...keys } });
    expect(ok.object_storage?.endpoint).toBe("https://store.example.com");
    const noEndpoint = refused({ type: "file", url, object_storage: keys });
    expect(noEndpoint.message).toContain("body.args.object_storage.endpoint");
    expect(noEndpoint.message).toContain(`${scheme}://`);
    expect(refused({ type: "file", url, object_storage: { endpoint: "https://store.example.com" } }).message).toMatch(/access_key_id and access_key_secret are required/);
    // Empty strings (Go zero values) count as missing.
    expect(refused({ type: "file", url, object_storage: { endpoint: "", ...keys } }).message).toContain("endpoint");
  });

  it("names the url among urls that is refused, and why", () => {
    const e = refused({ type: "file", urls: ["s3://b/k", "file:///etc/shadow"], object_storage: keys });
    expect(e.message).toContain("body.args.urls.1");
    expect(e.message).toMatch(/seed peers read their local disks/);
    expect(refused({ type: "file", url: "ftp://host/f" }).message).toMatch(/unsupported URL scheme "ftp:"/);
    expect(refused({ type: "file", url: "gopher://nn/f" }).message).toMatch(/unsupported URL scheme "gopher:"/);
  });

  it("refuses malformed object URLs: no key, an object key naming a directory, credentials or a query in the URL", () => {
    expect(refused({ type: "file", url: "s3://bucket" }).message).toMatch(/no object key/);
    // A URL ending in "/" is a directory preheat (source-args.ts); its bucket is still required.
    expect(parsePreheatArgs({ type: "file", url: "s3://bucket/dir/" }).url).toBe("s3://bucket/dir/");
    expect(refused({ type: "file", url: "s3:///dir/" }).message).toMatch(/no bucket/);
    // The key is percent-decoded as the seed peers' daemons decode it: a%2F is the directory a/.
    expect(refused({ type: "file", url: "s3://bucket/a%2F" }).message).toMatch(/names a directory/);
    expect(refused({ type: "file", urls: ["s3://bucket/ok", "s3://bucket/a%E0%A4"] }).message).toMatch(/body\.args\.urls\.1: .*not valid percent-encoding/);
    expect(parsePreheatArgs({ type: "file", url: "s3://bucket/a%2Fb" }).url).toBe("s3://bucket/a%2Fb");
    const userinfo = refused({ type: "file", url: "s3://AKID:hunter2@bucket/k" });
    expect(userinfo.message).toMatch(/credentials do not belong in the URL/);
    expect(userinfo.message).not.toContain("hunter2");
    expect(refused({ type: "file", url: "s3://bucket/k?versionId=1" }).message).toMatch(/no query/);
  });

  it("refuses a credential file, an endpoint that is no http(s) URL, and a key id without its secret", () => {
    expect(refused({ type: "file", url: "gs://b/k", object_storage: { credential_path: "/etc/gcs.json" } }).message).toContain("credential_path");
    expect(refused({ type: "file", url: "s3://b/k", object_storage: { endpoint: "file:///var/run/x" } }).message).toMatch(/invalid endpoint scheme/);
    expect(refused({ type: "file", url: "s3://b/k", object_storage: { endpoint: "http://u:p@store" } }).message).toMatch(/carries credentials/);
    expect(refused({ type: "file", url: "s3://b/k", object_storage: { access_key_id: "AKID" } }).message).toContain("access_key_secret");
  });

  it("keeps image preheats to http(s) manifests", () => {
    expect(refused({ type: "image", url: "s3://bucket/v2/app/manifests/latest" }).message).toMatch(/unsupported URL scheme "s3:"/);
  });
});

describe("preheat args: object storage secrets", () => {
  const args = parsePreheatArgs({
    type: "file",
    url: "s3://bucket/k",
    object_storage: { endpoint: "http://127.0.0.1:8333", region: "us-east-1", ...keys, session_token: "the-session-token", security_token: null, insecure_skip_verify: true },
  });

  it("splits the secrets off what is stored, and joins them back for dispatch", () => {
    const { stored, secrets } = splitSecrets(args.object_storage!);
    expect(stored).toEqual({ endpoint: "http://127.0.0.1:8333", region: "us-east-1", access_key_id: "AKIDREADER", access_key_secret: "[redacted]", session_token: "[redacted]", insecure_skip_verify: true });
    expect(secrets).toEqual({ access_key_secret: "the-secret-key", session_token: "the-session-token" });
    expect(needsSecrets(stored)).toBe(true);
    expect(needsSecrets({ endpoint: "http://127.0.0.1:8333" })).toBe(false);
    expect(toObjectStorage(stored, secrets)).toMatchObject({ endpoint: "http://127.0.0.1:8333", region: "us-east-1", accessKeyId: "AKIDREADER", accessKeySecret: "the-secret-key", sessionToken: "the-session-token", insecureSkipVerify: true });
    // Without the held secrets nothing secret is sent (the runner fails such a job first).
    expect(toObjectStorage(stored, undefined)?.accessKeySecret).toBeUndefined();
  });

  it("redacts every secret in what the API returns, whatever the row holds", () => {
    const shown = JSON.stringify(redactArgs({ ...args }));
    expect(shown).not.toContain("the-secret-key");
    expect(shown).not.toContain("the-session-token");
    expect(shown).toContain("AKIDREADER");
  });
});
