// Preheat of hf:// and modelscope:// URLs through the real components on loopback (issue 23):
// a manager job with `hugging_face` / `model_scope` args (token, revision, base_url) goes
// manager → scheduler (PreheatFile with the hub options) → seed peer, which fetches from the hub
// fixture; then a plain peer's dfget of the same URL with the same revision names the same task
// (the revision is part of the task id) and gets every piece from the seed while the hub is not
// asked for the file again. A repository URL is a directory: its files are listed by the seed and
// preheated one task each. The token is in neither the job row nor the jobs API; a wrong or
// missing token or an unknown revision fails the job naming the URL, with nothing cached.
import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { taskIdFromUrl } from "../../src/common/ids.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { DEFAULT_FILTERED_QUERY_PARAMS } from "../../src/manager/jobs/args.js";
import { statTask } from "../helpers/manager-api.js";
import { startHubFixture, type HubFixture } from "../helpers/model-hub-fixture.js";
import { makeContent } from "../helpers/origin.js";
import { preheatJob, secretShown, startPreheatStack, type PreheatStack } from "../helpers/preheat-stack.js";
import { cleanupTempDirs, runDfget, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";

const ROOT_PASSWORD = "hub-preheat-root-1";
const TOKEN = "hf_preheat_token_5a4b3c2d1e";
const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const idOf = (url: string, revision: string) => taskIdFromUrl({ url, revision, filteredQueryParams: DEFAULT_FILTERED_QUERY_PARAMS });

describe("preheat of model hub URLs: manager job → scheduler → seed peer, then a peer's dfget comes from the seed", () => {
  let hf: HubFixture;
  let ms: HubFixture;
  let stack: PreheatStack;
  let seed: DaemonHandle;
  let peer: DaemonHandle;
  const weights = makeContent(20 * MiB + 3, 51);
  // Each over 4 MiB: a peer fetches smaller files from the origin itself, as Dragonfly's do.
  const repo: Record<string, Buffer> = {
    "config.json": makeContent(4 * MiB + 3, 52),
    "model.safetensors": makeContent(6 * MiB + 7, 53),
    "tokenizer/vocab with space.txt": makeContent(4 * MiB + 70, 54),
  };

  /** Requests the hub got for a file since `mark` (its log index). */
  const asked = (f: HubFixture, mark: number, path: string) => f.log.slice(mark).filter((l) => l.includes("/resolve/") && l.endsWith(`/${path.split("/").map(encodeURIComponent).join("/")}`));
  /**
   * The origin after the preheat, while a peer pulls the file: the peer's daemon stats the
   * origin (as Dragonfly's clients do: an origin's refusal of this requester must stand), a
   * ranged read of one byte; no content beyond it.
   */
  function onlyStatted(f: HubFixture, mark: number, path: string, servedBefore: number): void {
    expect(f.served(path) - servedBefore, path).toBeLessThanOrEqual(1);
    expect(asked(f, mark, path).length, `${path}: ${asked(f, mark, path).join(", ")}`).toBeLessThanOrEqual(2);
  }

  beforeAll(async () => {
    hf = await startHubFixture("hf");
    ms = await startHubFixture("modelscope");
    hf.commit("acme/private", { "weights/model.safetensors": weights }, { token: TOKEN });
    // Never preheated with the right token: a bad preheat of it cannot be answered from the seed's cache.
    hf.commit("acme/locked", { "w.bin": makeContent(MiB, 55) }, { token: TOKEN });
    ms.commit("acme/tiny", repo, { revision: "v1" });
    stack = await startPreheatStack("preheat-hub", ROOT_PASSWORD);
    const schedulers = [`127.0.0.1:${stack.scheduler.grpcPort}`];
    seed = await startTestDaemon({ name: "hub-preheat-seed", schedulers, seed: true });
    peer = await startTestDaemon({ name: "hub-preheat-peer", schedulers });
  });

  afterAll(async () => {
    await peer?.close().catch(() => undefined);
    await seed?.close().catch(() => undefined);
    await stack?.close();
    await hf?.close();
    await ms?.close();
    cleanupTempDirs();
  });

  it("hf:// file of a private repository: the seed holds it under dfget's task id, the peer gets it from the seed, the token is never shown", async () => {
    const url = "hf://acme/private/weights/model.safetensors";
    const job = await preheatJob(stack, { url, hugging_face: { token: TOKEN, base_url: hf.url } });
    expect(job.state, JSON.stringify(job.result)).toBe("SUCCESS");
    expect(job.result.job_states[0]?.results[0]?.success_tasks).toEqual([{ url, hostname: "hub-preheat-seed", ip: "127.0.0.1" }]);
    // dfget's default revision ("main") is part of the task id the seed holds.
    const taskId = idOf(url, "main");
    expect(await statTask(seed.uploadPort, taskId)).toMatchObject({ id: taskId, state: "Succeeded", contentLength: weights.length });
    expect(hf.served("weights/model.safetensors")).toBeGreaterThanOrEqual(weights.length);

    const mark = hf.log.length;
    const servedBefore = hf.served("weights/model.safetensors");
    const out = join(tempDir("preheat-hf-out"), "model.safetensors");
    const pulled = await runDfget(peer.socketPath, [url, "-O", out, "--hf-token", TOKEN, "--hf-base-url", hf.url]);
    expect(pulled.status, pulled.stderr).toBe(0);
    expect(sha256File(out)).toBe(sha(weights));
    onlyStatted(hf, mark, "weights/model.safetensors", servedBefore);
    const task = peer.storage.get(taskId);
    expect(task?.finished().length).toBeGreaterThan(1);
    expect(task!.finished().every((p) => p.parentId !== "")).toBe(true);

    expect(job.args.hugging_face).toEqual({ token: "[redacted]", revision: "main", base_url: hf.url });
    expect(await secretShown(stack, job.id, TOKEN)).toBe(false);
  });

  it("modelscope:// repository at a revision: every file preheated as its own task, then dfget -r of it is served by the seed", async () => {
    const url = "modelscope://acme/tiny";
    const job = await preheatJob(stack, { url, model_scope: { revision: "v1", base_url: ms.url } });
    expect(job.state, JSON.stringify(job.result)).toBe("SUCCESS");
    const files = Object.keys(repo).map((p) => `${url}/${p.split("/").map(encodeURIComponent).join("/")}`);
    expect(job.result.job_states[0]?.results[0]?.success_tasks.map((t) => t.url).sort()).toEqual([...files].sort());
    for (const f of files) expect((await statTask(seed.uploadPort, idOf(f, "v1"))).state, f).toBe("Succeeded");

    const mark = ms.log.length;
    const servedBefore = Object.fromEntries(Object.keys(repo).map((p) => [p, ms.served(p)]));
    const out = tempDir("preheat-ms-out");
    const pulled = await runDfget(peer.socketPath, [url, "-r", "-O", out, "--ms-revision", "v1", "--ms-base-url", ms.url]);
    expect(pulled.status, pulled.stderr).toBe(0);
    for (const [path, content] of Object.entries(repo)) {
      expect(sha256File(join(out, path)), path).toBe(sha(content));
      onlyStatted(ms, mark, path, servedBefore[path]!);
    }
    for (const f of files) {
      const pieces = peer.storage.get(idOf(f, "v1"))?.finished() ?? [];
      expect(pieces.length, f).toBeGreaterThan(0);
      expect(pieces.every((p) => p.parentId !== ""), f).toBe(true);
    }
  });

  describe("bad input: the job fails naming the URL, the token never shown, nothing cached", () => {
    async function failed(url: string, args: Record<string, unknown>, why: RegExp, revision = "main"): Promise<void> {
      const job = await preheatJob(stack, { url, ...args });
      expect(job.state).toBe("FAILURE");
      const error = job.result.job_states[0]?.error ?? "";
      expect(error).toContain(url);
      expect(error).toMatch(why);
      expect(job.result.job_states[0]?.results[0]?.failure_tasks.map((t) => t.url)).toEqual([url]);
      expect(await secretShown(stack, job.id, TOKEN)).toBe(false);
      expect(seed.storage.get(idOf(url, revision))?.meta.state).not.toBe("succeeded");
    }

    it("a wrong token", async () => {
      await failed("hf://acme/locked/w.bin", { hugging_face: { token: `${TOKEN}-wrong`, base_url: hf.url } }, /refused the token \(401/);
    });

    it("no token for a private repository", async () => {
      await failed("hf://acme/locked/w.bin", { hugging_face: { base_url: hf.url } }, /needs a token/);
    });

    it("a revision that does not exist, for a file and for a repository", async () => {
      await failed("modelscope://acme/tiny/config.json", { model_scope: { revision: "no-such-branch", base_url: ms.url } }, /no-such-branch/, "no-such-branch");
      await failed("modelscope://acme/tiny", { model_scope: { revision: "no-such-branch", base_url: ms.url } }, /no-such-branch/, "no-such-branch");
    });

    it("an unknown scheme is refused when the job is created", async () => {
      const res = await stack.json<{ message: string }>("POST", "/oapi/v1/jobs", stack.pat, { type: "preheat", args: { type: "file", url: "gopher://acme/tiny/config.json" } });
      expect(res.status).toBe(400);
      expect(res.body.message).toMatch(/body\.args\.url: unsupported URL scheme "gopher:"/);
    });
  });
});
