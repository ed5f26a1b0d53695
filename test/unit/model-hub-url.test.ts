// Model hub URLs (issue 23): Dragonfly's hf:// and modelscope:// forms, the hubs' file URLs,
// the entries a listing writes, Hugging Face's Link pagination, and dfget's --hf-* / --ms-* flags.
import { describe, expect, it } from "vitest";
import { modelHubOf } from "../../src/cli/model-hub-flags.js";
import { hubFileUrl, parseHubUrl, type HubUrl } from "../../src/common/model-hub.js";
import { huggingFace, nextLink } from "../../src/daemon/backend/hugging-face.js";
import { ModelHubBackend, resolveUrl } from "../../src/daemon/backend/model-hub.js";
import { modelScope } from "../../src/daemon/backend/model-scope.js";
import { Download } from "../../src/gen/common/v2/common.js";

const parse = (url: string) => parseHubUrl(new URL(url));
const repo = (url: string): HubUrl => {
  const r = parse(url);
  if (!r.ok) throw new Error(r.wrong);
  return r.value;
};

describe("parseHubUrl", () => {
  it("reads the repository from the host and the path, a model without a type prefix", () => {
    expect(repo("hf://Qwen/Qwen2.5-0.5B/config.json")).toEqual({ scheme: "hf", repoType: "models", repoId: "Qwen/Qwen2.5-0.5B", path: "config.json", typeGiven: false });
    expect(repo("hf://models/acme/m/a/b.bin")).toMatchObject({ repoType: "models", repoId: "acme/m", path: "a/b.bin", typeGiven: true });
    expect(repo("hf://datasets/acme/corpus/data/train%20v1.parquet")).toMatchObject({ repoType: "datasets", repoId: "acme/corpus", path: "data/train v1.parquet" });
    expect(repo("hf://spaces/acme/demo/app.py")).toMatchObject({ repoType: "spaces", repoId: "acme/demo" });
    expect(repo("modelscope://datasets/acme/corpus/x")).toMatchObject({ scheme: "modelscope", repoType: "datasets" });
  });

  it("a URL without a path is the repository, with or without a trailing slash", () => {
    expect(repo("hf://acme/m").path).toBeUndefined();
    expect(repo("hf://acme/m/").path).toBeUndefined();
    expect(repo("modelscope://datasets/acme/c/").path).toBeUndefined();
  });

  it("ModelScope has no spaces: spaces/ is an owner there", () => {
    expect(repo("modelscope://spaces/acme/f")).toMatchObject({ repoType: "models", repoId: "spaces/acme", path: "f" });
  });

  it("refuses what is not a repository's file", () => {
    expect(parse("hf://acme")).toEqual({ ok: false, wrong: "no-repo" });
    expect(parse("hf://datasets/acme")).toEqual({ ok: false, wrong: "no-repo" });
    expect(parse("hf://acme/m/a//b")).toEqual({ ok: false, wrong: "segment" });
    // ".." (also as %2E%2E) is resolved by URL parsing, as by Dragonfly's url crate: it never reaches the hub.
    expect(repo("hf://acme/m/../other/f")).toMatchObject({ repoId: "acme/other", path: "f" });
    expect(repo("hf://acme/m/a/%2E%2E/b")).toMatchObject({ repoId: "acme/m", path: "b" });
    expect(parse("hf://acme/m/a%2Fb")).toEqual({ ok: false, wrong: "segment" });
    expect(parse("hf://acme/m/a%E0%A4")).toEqual({ ok: false, wrong: "encoding" });
    expect(parse("hf://acme/m/f?revision=v1")).toEqual({ ok: false, wrong: "query" });
    expect(parse("hf://user:hf_secret@acme/m/f")).toEqual({ ok: false, wrong: "credentials" });
    expect(parse("s3://b/k")).toEqual({ ok: false, wrong: "not-hub" });
  });
});

describe("hub URLs", () => {
  it("Hugging Face resolves a file at a revision, with the type prefix for datasets and spaces only", () => {
    expect(resolveUrl(huggingFace, "https://huggingface.co", repo("hf://acme/m/a b/c.bin"), "main", "a b/c.bin")).toBe("https://huggingface.co/acme/m/resolve/main/a%20b/c.bin");
    expect(resolveUrl(huggingFace, "http://h", repo("hf://datasets/acme/c/f"), "refs/pr/1", "f")).toBe("http://h/datasets/acme/c/resolve/refs%2Fpr%2F1/f");
    expect(resolveUrl(huggingFace, "http://h", repo("hf://models/acme/m/f"), "v1", "f")).toBe("http://h/acme/m/resolve/v1/f");
  });

  it("ModelScope resolves a file under its repository type always", () => {
    expect(resolveUrl(modelScope, "https://modelscope.cn", repo("modelscope://acme/m/w.bin"), "master", "w.bin")).toBe("https://modelscope.cn/models/acme/m/resolve/master/w.bin");
    expect(resolveUrl(modelScope, "http://h", repo("modelscope://datasets/acme/c/d/e"), "v2", "d/e")).toBe("http://h/datasets/acme/c/resolve/v2/d/e");
  });

  it("a listing's entries are hub URLs in the form the repository was named", () => {
    expect(hubFileUrl(repo("hf://acme/m"), "dir/a b.bin")).toBe("hf://acme/m/dir/a%20b.bin");
    expect(hubFileUrl(repo("hf://models/acme/m/"), "f")).toBe("hf://models/acme/m/f");
    expect(hubFileUrl(repo("hf://datasets/acme/c"), "f")).toBe("hf://datasets/acme/c/f");
    expect(hubFileUrl(repo("modelscope://acme/m"), "f")).toBe("modelscope://acme/m/f");
  });

  it("follows a Link header's next page, resolved against the request", () => {
    expect(nextLink('<https://h/api/models/a/b/tree/x?cursor=2>; rel="next"', "https://h/api/x")).toBe("https://h/api/models/a/b/tree/x?cursor=2");
    expect(nextLink('</api/p2>; rel="prev", </api/p3>; rel="next"', "http://h:1/api/p1")).toBe("http://h:1/api/p3");
    expect(nextLink(undefined, "http://h/")).toBeUndefined();
    expect(nextLink('<http://h/p0>; rel="prev"', "http://h/")).toBeUndefined();
  });
});

describe("the hub backend's refusals of bad input (400, before any request)", () => {
  const backend = new ModelHubBackend(huggingFace, { http: { maxRetries: 0 }, endpoint: "http://127.0.0.1:9" });
  const bound = (o: Partial<Download["huggingFace"]> = {}) => backend.forDownload(Download.fromPartial({ huggingFace: { revision: "main", ...o } }));

  it("names the URL and the flag to use instead", async () => {
    await expect(bound().stat({ url: "hf://acme/m/f?revision=v1", headers: {} })).rejects.toThrow(/^hf:\/\/acme\/m\/f\?revision=v1: a hf:\/\/ URL has no query; pass the revision with dfget --hf-revision$/);
    await expect(bound().stat({ url: "hf://acme/m", headers: {} })).rejects.toThrow(/names a repository, not a file; download a whole repository with dfget --recursive/);
    await expect(bound({ baseUrl: "ftp://mirror" }).stat({ url: "hf://acme/m/f", headers: {} })).rejects.toThrow(/invalid Hugging Face base URL \(--hf-base-url\)/);
  });

  it("never puts credentials from the URL in its message", async () => {
    const err = await bound().stat({ url: "hf://u:hf_topsecret@acme/m/f", headers: {} }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/credentials do not belong in the URL; pass the token with dfget --hf-token/);
    expect((err as Error).message).not.toContain("hf_topsecret");
  });
});

describe("dfget's hub flags", () => {
  const flags = { hfRevision: "main", hfToken: "hf_t", hfBaseUrl: "http://mirror", msRevision: "master", msToken: "ms_t", msBaseUrl: undefined };

  it("each hub's options go with its own scheme only", () => {
    expect(modelHubOf("hf://acme/m/f", flags)).toEqual({ huggingFace: { revision: "main", token: "hf_t", baseUrl: "http://mirror" } });
    expect(modelHubOf("modelscope://acme/m/f", flags)).toEqual({ modelScope: { revision: "master", token: "ms_t", baseUrl: undefined } });
    expect(modelHubOf("https://example.com/f", flags)).toEqual({});
    expect(modelHubOf("s3://b/k", flags)).toEqual({});
  });
});
