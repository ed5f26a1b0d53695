// The hub fixture (helpers/model-hub-fixture.ts) speaks the Hugging Face Hub's API as the real
// client expects it: huggingface_hub (PyPI, installed by .ci/run into
// /var/cache/damselfly/venv-hf through scripts/install-hub-client.sh) downloads one file with
// hf_hub_download and a whole repository with snapshot_download from it, HF_ENDPOINT pointed at
// the fixture; the bytes it gets are the fixture's. A missing venv fails this test.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { makeContent } from "../helpers/origin.js";
import { startHubFixture, type HubFixture } from "../helpers/model-hub-fixture.js";
import { cleanupTempDirs, tempDir } from "../helpers/swarm.js";

const PYTHON = "/var/cache/damselfly/venv-hf/bin/python";
const SCRIPT = join(import.meta.dirname, "../helpers/hf-client-check.py");
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

function runClient(hub: HubFixture, args: string[]): Promise<{ file: string; snapshot: Record<string, string> }> {
  const home = tempDir("hf-home");
  const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HOME: home, HF_HUB_DISABLE_TELEMETRY: "1", HF_HUB_DISABLE_PROGRESS_BARS: "1", HF_HUB_ETAG_TIMEOUT: "30", HF_HUB_DOWNLOAD_TIMEOUT: "30" };
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [SCRIPT, ...args, join(home, "cache")], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`huggingface_hub failed: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as { file: string; snapshot: Record<string, string> });
    });
  });
}

describe("hub fixture vs the real huggingface_hub client", () => {
  let hub: HubFixture;
  const files: Record<string, Buffer> = {
    "config.json": Buffer.from('{"model_type":"tiny"}\n'),
    "weights/model-00001.safetensors": makeContent(3 * 1024 * 1024 + 11, 7),
    "weights/nested/tokenizer.json": makeContent(5000, 8),
  };

  beforeAll(async () => {
    hub = await startHubFixture("hf");
    hub.pageSize = 2; // the client follows the tree listing's Link pages
    hub.commit("acme/tiny", files);
    hub.commit("acme/private", files, { token: "hf_fixture_token" });
    hub.commit("acme/corpus", files, { type: "datasets", revision: "v1" });
  });

  afterAll(async () => {
    await hub?.close();
    cleanupTempDirs();
  });

  it("the venv with huggingface_hub is installed (scripts/install-hub-client.sh)", () => {
    expect(existsSync(PYTHON), `${PYTHON} is missing: run scripts/install-hub-client.sh`).toBe(true);
  });

  const want = Object.fromEntries(Object.entries(files).map(([p, b]) => [p, sha(b)]));

  it.each([
    ["a public model", "acme/tiny", "model", "main", ""],
    ["a private model with its token", "acme/private", "model", "main", "hf_fixture_token"],
    ["a dataset at a tag", "acme/corpus", "dataset", "v1", ""],
  ])("hf_hub_download and snapshot_download of %s", async (_what, repo, type, revision, token) => {
    const r = await runClient(hub, [repo, type, "weights/model-00001.safetensors", revision, token]);
    expect(r.file).toBe(want["weights/model-00001.safetensors"]);
    expect(r.snapshot).toEqual(want);
  });

  it("the client's unknown revision is the fixture's RevisionNotFound", async () => {
    await expect(runClient(hub, ["acme/tiny", "model", "config.json", "no-such-branch", ""])).rejects.toThrow(/RevisionNotFound|Revision Not Found|Invalid rev id/);
  });
});
