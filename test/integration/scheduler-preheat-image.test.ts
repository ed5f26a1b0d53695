// PreheatImage / StatImage against Debian's docker-registry with an image pushed through the
// distribution API: the scheduler resolves the index to the platform's manifest (the shared
// OCI resolver), triggers seed peers for each blob by scope, and StatImage reports per host
// which blobs it holds. Bad requests and registries the SSRF policy refuses fail clearly.
import { status } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { taskIdFromUrl } from "../../src/common/ids.js";
import { Priority } from "../../src/gen/common/v2/common.js";
import { PreheatImageRequest, StatImageRequest, type SchedulerClient } from "../../src/gen/scheduler/v2/scheduler.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { pushImage, REGISTRY_BIN, REGISTRY_SKIP, startRealRegistry, type PushedImage, type RealRegistry } from "../helpers/registry.js";
import { announceHost, hostMsg, startFakeSeed, startTestScheduler, unaryCall, type FakeSeed } from "./scheduler-helpers.js";

type Client = InstanceType<typeof SchedulerClient>;

if (!REGISTRY_BIN) console.warn(`scheduler-preheat-image: ${REGISTRY_SKIP}`);

(REGISTRY_BIN ? describe : describe.skip)(REGISTRY_BIN ? "scheduler PreheatImage / StatImage" : REGISTRY_SKIP, () => {
  let dir: string;
  let registry: RealRegistry;
  let image: PushedImage;
  let handle: SchedulerHandle;
  let client: Client;
  const seeds: FakeSeed[] = [];
  const preheat = (p: Partial<PreheatImageRequest>) => unaryCall(client.preheatImage.bind(client), PreheatImageRequest.fromPartial({ priority: Priority.LEVEL0, ...p }));
  const stat = (p: Partial<StatImageRequest>) => unaryCall(client.statImage.bind(client), StatImageRequest.fromPartial(p));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "scheduler-registry-"));
    registry = await startRealRegistry(dir);
    image = await pushImage(registry.port, "test/app", "v1", { layers: 2 });
    ({ handle, client } = await startTestScheduler({ job: { preheat: { ssrf: { allowCIDRs: ["127.0.0.0/8"] } } } }));
    for (const id of ["127.0.0.1-seed-a-seed", "127.0.0.1-seed-b-seed"]) {
      const seed = await startFakeSeed(handle.grpcPort, id);
      seeds.push(seed);
      await announceHost(client, hostMsg(id, { type: 1, port: seed.port, maxTx: 10e9 }));
    }
  });

  afterAll(async () => {
    client?.close();
    for (const s of seeds) await s.close();
    await handle?.close();
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const requested = () => seeds.flatMap((s) => s.requests.map((r) => r.download?.url ?? ""));

  it("preheats every blob of the platform's manifest on the seed the ring picks for it; StatImage reports them held", async () => {
    const before = requested().length;
    await preheat({ url: image.manifestUrl, platform: "linux/arm64", scope: "single_seed_peer", filteredQueryParams: [] });
    const want = (image.blobs.arm64 ?? []).map((d) => image.blobUrl(d));
    expect(want).toHaveLength(3);
    await expect.poll(() => requested().slice(before).sort(), { timeout: 10_000 }).toEqual([...want].sort());
    // Each blob went where single_seed_peer's ring sends its task id.
    for (const url of want) {
      const host = handle.seedPeers?.select(taskIdFromUrl({ url, filteredQueryParams: [] }));
      const seed = seeds[host?.id === "127.0.0.1-seed-a-seed" ? 0 : 1];
      expect(seed?.requests.some((r) => r.download?.url === url && r.download.needBackToSource)).toBe(true);
    }
    // Seeds fetch with the registry's headers; this registry needs no auth, so none is added.
    expect(seeds.flatMap((s) => s.requests).every((r) => r.download?.requestHeader.authorization === undefined)).toBe(true);

    await expect
      .poll(async () => {
        const res = await stat({ url: image.manifestUrl, platform: "linux/arm64", filteredQueryParams: [] });
        return res.peers.flatMap((p) => p.cachedLayers.filter((l) => l.isFinished === true).map((l) => l.url)).sort();
      }, { timeout: 10_000 })
      .toEqual([...want].sort());
    const res = await stat({ url: image.manifestUrl, platform: "linux/arm64", filteredQueryParams: [] });
    expect(res.image?.layers.map((l) => l.url)).toEqual(want);
    expect(res.peers.map((p) => p.ip)).toEqual(res.peers.map(() => "127.0.0.1"));
    // The other platform's blobs are held by nobody.
    const amd = await stat({ url: image.manifestUrl, platform: "linux/amd64", filteredQueryParams: [] });
    expect(amd.image?.layers.map((l) => l.url)).toEqual((image.blobs.amd64 ?? []).map((d) => image.blobUrl(d)));
    expect(amd.peers).toEqual([]);
  });

  it("all_seed_peers narrowed by count sends each blob to that many seeds", async () => {
    const before = seeds.map((s) => s.requests.length);
    await preheat({ url: image.manifestUrl, platform: "linux/amd64", scope: "all_seed_peers", count: 1, concurrentTaskCount: 1, filteredQueryParams: [] });
    const want = (image.blobs.amd64 ?? []).map((d) => image.blobUrl(d)).sort();
    // selectHosts orders by host id: seed-a is the one.
    await expect.poll(() => seeds[0]?.requests.slice(before[0]).map((r) => r.download?.url ?? "").sort(), { timeout: 10_000 }).toEqual(want);
    expect(seeds[1]?.requests.length).toBe(before[1]);
  });

  it("refuses bad requests with INVALID_ARGUMENT naming the problem", async () => {
    await expect(preheat({ url: `${registry.base}/v2/test/app/blobs/sha256:00` })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/not a manifest URL/) as unknown });
    await expect(preheat({ url: image.manifestUrl, scope: "everyone" })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/scope/) as unknown });
    await expect(preheat({ url: image.manifestUrl, platform: "linux" })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/platform/) as unknown });
    await expect(preheat({ url: image.manifestUrl, platform: "windows/amd64" })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/no manifest for platform windows\/amd64/) as unknown });
    await expect(preheat({ url: `${registry.base}/v2/test/app/manifests/missing` })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/failed to resolve manifests: .*404/) as unknown });
    await expect(preheat({ url: image.manifestUrl, concurrentTaskCount: 0 })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/concurrent_task_count/) as unknown });
    await expect(stat({ url: "not a url" })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  });

  it("refuses a registry on loopback unless allowlisted, and preheats nothing without seed peers", async () => {
    await expect(startTestScheduler({ job: { preheat: { ssrf: { allowCIDRs: ["127.0.0.0/33"] } } } })).rejects.toThrow(/job\.preheat\.ssrf\.allowCIDRs\.0: "127\.0\.0\.0\/33" is not a CIDR/);
    const { handle: strict, client: strictClient } = await startTestScheduler();
    const { handle: noSeeds, client: noSeedsClient } = await startTestScheduler({ seedPeer: { enable: false }, job: { preheat: { ssrf: { allowCIDRs: ["127.0.0.0/8"] } } } });
    try {
      await expect(unaryCall(strictClient.preheatImage.bind(strictClient), PreheatImageRequest.fromPartial({ url: image.manifestUrl }))).rejects.toMatchObject({
        code: status.INVALID_ARGUMENT,
        details: expect.stringMatching(/SSRF/) as unknown,
      });
      await expect(unaryCall(strictClient.statImage.bind(strictClient), StatImageRequest.fromPartial({ url: image.manifestUrl }))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/SSRF/) as unknown });
      await expect(unaryCall(noSeedsClient.preheatImage.bind(noSeedsClient), PreheatImageRequest.fromPartial({ url: image.manifestUrl }))).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    } finally {
      strictClient.close();
      noSeedsClient.close();
      await strict.close();
      await noSeeds.close();
    }
  });
});
