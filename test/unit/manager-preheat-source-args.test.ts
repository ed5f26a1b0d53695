// Preheat job args for hdfs://, hf:// and modelscope:// URLs and directories (issue 23): the
// schemes a file preheat accepts beyond http(s) and object stores, the hub revision filled in
// (it names the task), and every token split off before a job is stored, redacted in what the
// API returns and joined back only for the URL's own scheme.
import { describe, expect, it } from "vitest";
import { parsePreheatArgs, redactArgs } from "../../src/manager/jobs/args.js";
import { refusedArgs } from "../helpers/preheat-args.js";
import { checkSourceUrl, needsPreheatSecrets, sourceOptions, splitPreheatSecrets } from "../../src/manager/jobs/source-args.js";

const refused = refusedArgs;

describe("preheat args: hdfs, hub and directory URLs", () => {
  it("tells files from directories by scheme", () => {
    const of = (u: string) => checkSourceUrl(new URL(u), "url");
    expect(of("hdfs://nn:9870/data/f.bin")).toEqual({ scheme: "hdfs", directory: false });
    expect(of("hdfs://nn:9870/data/")).toEqual({ scheme: "hdfs", directory: true });
    expect(of("hf://acme/tiny/config.json")).toEqual({ scheme: "hf", directory: false });
    // A repository without a file path is the whole repository, as dfget -r takes it.
    expect(of("hf://acme/tiny")).toEqual({ scheme: "hf", directory: true });
    expect(of("modelscope://datasets/acme/set/sub/")).toEqual({ scheme: "modelscope", directory: true });
    expect(of("s3://b/dir/")).toEqual({ scheme: "s3", directory: true });
    expect(of("https://h/x/")).toEqual({ scheme: "http", directory: false });
  });

  it("fills the hub's default revision, as dfget does, so both name the same task", () => {
    expect(parsePreheatArgs({ type: "file", url: "hf://acme/tiny/a.bin" }).hugging_face).toEqual({ revision: "main" });
    expect(parsePreheatArgs({ type: "file", url: "modelscope://acme/tiny/a.bin" }).model_scope).toEqual({ revision: "master" });
    const pinned = parsePreheatArgs({ type: "file", url: "hf://acme/tiny/a.bin", hugging_face: { revision: "v1.0", token: "hf_x", base_url: "http://127.0.0.1:9" } });
    expect(pinned.hugging_face).toEqual({ revision: "v1.0", token: "hf_x", base_url: "http://127.0.0.1:9" });
    // Options of a scheme no URL uses are dropped.
    expect(parsePreheatArgs({ type: "file", url: "https://h/a", hugging_face: { token: "hf_x" }, hdfs: { delegation_token: "dt" } })).not.toHaveProperty("hugging_face");
  });

  it("refuses credentials or a query in hdfs and hub URLs without echoing them, and a bad base URL", () => {
    const hdfs = refused({ type: "file", url: "hdfs://user:s3cret@nn/f" });
    expect(hdfs.message).toMatch(/delegation_token/);
    expect(hdfs.message).not.toContain("s3cret");
    expect(refused({ type: "file", url: "hdfs://nn/f?delegation=x" }).message).toMatch(/no query/);
    expect(refused({ type: "file", url: "hdfs://nn/" }).message).toMatch(/no path/);
    const hub = refused({ type: "file", url: "hf://me:hf_tok@acme/tiny/f" });
    expect(hub.message).toMatch(/args\.hugging_face\.token/);
    expect(hub.message).not.toContain("hf_tok");
    expect(refused({ type: "file", url: "hf://acme/tiny/f?revision=v2" }).message).toMatch(/args\.hugging_face\.revision/);
    expect(refused({ type: "file", url: "hf://acme" }).message).toMatch(/no repository/);
    expect(refused({ type: "file", url: "modelscope://acme/tiny/f", model_scope: { base_url: "ftp://hub" } }).message).toMatch(/body\.args\.model_scope\.base_url/);
    expect(refused({ type: "file", url: "hf://acme/tiny/f", hugging_face: { revision: "a b" } }).message).toMatch(/invalid revision/);
  });

  it("splits every token off what is stored, redacts it in API output, and joins it back for its own scheme only", () => {
    const parsed = parsePreheatArgs({ type: "file", urls: ["hdfs://nn/d/f", "hf://acme/tiny/a", "modelscope://acme/tiny/b"], hdfs: { delegation_token: "dt-secret" }, hugging_face: { token: "hf-secret" }, model_scope: { token: "ms-secret", revision: "v2" } });
    const { stored, secrets } = splitPreheatSecrets(parsed);
    expect(JSON.stringify(stored)).not.toMatch(/dt-secret|hf-secret|ms-secret/);
    expect(stored.model_scope).toEqual({ token: "[redacted]", revision: "v2" });
    expect(secrets).toEqual({ hdfs_delegation_token: "dt-secret", hugging_face_token: "hf-secret", model_scope_token: "ms-secret" });
    expect(needsPreheatSecrets(stored)).toBe(true);
    expect(needsPreheatSecrets(parsePreheatArgs({ type: "file", url: "hf://acme/tiny/a" }))).toBe(false);
    expect(sourceOptions("hdfs", stored, secrets)).toEqual({ hdfs: { delegationToken: "dt-secret" } });
    expect(sourceOptions("hf", stored, secrets)).toEqual({ huggingFace: { revision: "main", token: "hf-secret", baseUrl: undefined } });
    expect(sourceOptions("modelscope", stored, secrets)).toEqual({ modelScope: { revision: "v2", token: "ms-secret", baseUrl: undefined } });
    expect(sourceOptions("http", stored, secrets)).toEqual({});
    // Without the held secrets (another manager): no token, never "[redacted]" sent as one.
    expect(sourceOptions("hf", stored, undefined).huggingFace?.token).toBeUndefined();
    // A row written before the split still shows no token.
    expect(JSON.stringify(redactArgs(parsed))).not.toMatch(/dt-secret|hf-secret|ms-secret/);
  });
});
