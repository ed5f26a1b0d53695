// scheduler.v2 over real gRPC on 127.0.0.1 with the generated client: every AnnouncePeer path
// (back-to-source, normal P2P, seed trigger, reschedule, piece failure, empty task,
// metadata-only, retry exhaustion) and the bad inputs the issue lists.
import { credentials, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthClient } from "../../src/common/grpc/health.js";
import { taskIdFromUrl } from "../../src/common/ids.js";
import { Priority } from "../../src/gen/common/v2/common.js";
import { HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health.js";
import type { SchedulerClient } from "../../src/gen/scheduler/v2/scheduler.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { until } from "../helpers/until.js";
import { Announce, announceHost, download, hostMsg, MiB, piece, startFakeSeed, startTestScheduler, unaryCall, type FakeSeed } from "./scheduler-helpers.js";

type Client = InstanceType<typeof SchedulerClient>;

let handle: SchedulerHandle;
let client: Client;
let seed: FakeSeed;

const PL = 4 * MiB;
const LEN = 10 * MiB; // 3 pieces
const url = (name: string) => `https://origin.example.com/${name}`;
const tid = (name: string) => taskIdFromUrl({ url: url(name) });

beforeAll(async () => {
  ({ handle, client } = await startTestScheduler({ scheduler: { retryInterval: "20ms", retryBackToSourceLimit: 3, retryLimit: 5 } }));
  for (const h of ["10.0.0.1-a", "10.0.0.2-b", "10.0.0.3-c", "10.0.0.4-d", "10.0.0.5-e"]) await announceHost(client, hostMsg(h, { port: 4000 }));
});

afterAll(async () => {
  client.close();
  await seed?.close();
  await handle.close();
});

/** A peer that goes to the origin and finishes, making the task Succeeded. */
async function backToSourcePeer(hostId: string, name: string, peerId: string): Promise<void> {
  const a = new Announce(client, hostId, tid(name), peerId);
  a.register(download(url(name), LEN, { needBackToSource: true }));
  const r = await a.next();
  expect(r.response?.$case).toBe("needBackToSourceResponse");
  a.send({ $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} });
  for (let n = 0; n < 3; n++) a.send({ $case: "downloadPieceBackToSourceFinishedRequest", downloadPieceBackToSourceFinishedRequest: { piece: piece(n, PL, Math.min(PL, LEN - n * PL)) } });
  a.send({ $case: "downloadPeerBackToSourceFinishedRequest", downloadPeerBackToSourceFinishedRequest: {} });
  expect((await a.status).code).toBe(status.OK);
}

describe("scheduler AnnouncePeer", () => {
  it("serves grpc.health.v1 for the empty service and the scheduler", async () => {
    const h = new HealthClient(`127.0.0.1:${handle.grpcPort}`, credentials.createInsecure());
    const r = await unaryCall(h.check.bind(h), { service: "" });
    expect(r.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const s = await unaryCall(h.check.bind(h), { service: "scheduler.v2.Scheduler" });
    expect(s.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    h.close();
  });

  it("back-to-source: first peer without seeds goes to the origin; the task succeeds with its pieces", async () => {
    await backToSourcePeer("10.0.0.1-a", "bts", "peer-a1");
    const task = await unaryCall(client.statTask.bind(client), { hostId: "10.0.0.1-a", taskId: tid("bts") });
    expect(task.state).toBe("Succeeded");
    expect(task.contentLength).toBe(LEN);
    expect(task.pieceCount).toBe(3);
    expect(task.pieces.map((p) => p.number)).toEqual([0, 1, 2]);
    const peer = await unaryCall(client.statPeer.bind(client), { hostId: "10.0.0.1-a", taskId: tid("bts"), peerId: "peer-a1" });
    expect(peer.state).toBe("Succeeded");
  });

  it("normal: the next peer gets the finished peer as candidate parent, with a full Peer object", async () => {
    const a = new Announce(client, "10.0.0.2-b", tid("bts"), "peer-b1");
    a.register(download(url("bts"), LEN));
    const r = await a.next();
    if (r.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${r.response?.$case}`);
    const parents = r.response.normalTaskResponse.candidateParents;
    expect(parents.map((p) => p.id)).toEqual(["peer-a1"]);
    const p = parents[0];
    expect(p?.state).toBe("Succeeded");
    expect(p?.host?.id).toBe("10.0.0.1-a");
    expect(p?.task?.id).toBe(tid("bts"));
    expect(p?.cost).toBeDefined();
    expect(p?.createdAt).toBeInstanceOf(Date);
    a.send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
    for (let n = 0; n < 3; n++) a.send({ $case: "downloadPieceFinishedRequest", downloadPieceFinishedRequest: { piece: piece(n, PL, Math.min(PL, LEN - n * PL), "peer-a1") } });
    a.send({ $case: "downloadPeerFinishedRequest", downloadPeerFinishedRequest: {} });
    expect((await a.status).code).toBe(status.OK);
    const stat = await unaryCall(client.statPeer.bind(client), { hostId: "10.0.0.2-b", taskId: tid("bts"), peerId: "peer-b1" });
    expect(stat.state).toBe("Succeeded");
    // Finished peers release their parents' upload slots.
    expect(handle.resource.hosts.get("10.0.0.1-a")?.concurrentUploadCount).toBe(0);
    expect(handle.resource.hosts.get("10.0.0.1-a")?.uploadContentLength).toBe(LEN);
  });

  it("reschedule: echoed candidates are blocked; with no one left the peer is sent to the origin", async () => {
    const a = new Announce(client, "10.0.0.3-c", tid("bts"), "peer-c1");
    a.register(download(url("bts"), LEN));
    const r = await a.next();
    if (r.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${r.response?.$case}`);
    const echoed = r.response.normalTaskResponse.candidateParents;
    expect(echoed.map((p) => p.id).sort()).toEqual(["peer-a1", "peer-b1"]);
    a.send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
    a.send({ $case: "reschedulePeerRequest", reschedulePeerRequest: { candidateParents: echoed, description: "not all pieces are downloaded from parent" } });
    const r2 = await a.next();
    expect(r2.response?.$case).toBe("needBackToSourceResponse");
    if (r2.response?.$case === "needBackToSourceResponse") expect(r2.response.needBackToSourceResponse.description).toMatch(/RetryBackToSourceLimit/);
    a.send({ $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} });
    a.send({ $case: "downloadPeerBackToSourceFinishedRequest", downloadPeerBackToSourceFinishedRequest: {} });
    expect((await a.status).code).toBe(status.OK);
  });

  it("piece failure (temporary) blocks that parent for this peer only", async () => {
    const a = new Announce(client, "10.0.0.4-d", tid("bts"), "peer-d1");
    a.register(download(url("bts"), LEN));
    const r = await a.next();
    if (r.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${r.response?.$case}`);
    expect(r.response.normalTaskResponse.candidateParents.map((p) => p.id)).toContain("peer-a1");
    const failedBefore = handle.resource.hosts.get("10.0.0.1-a")?.uploadFailedCount ?? 0;
    a.send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
    a.send({ $case: "downloadPieceFailedRequest", downloadPieceFailedRequest: { pieceNumber: 1, parentId: "peer-a1", temporary: true } });
    a.send({ $case: "reschedulePeerRequest", reschedulePeerRequest: { candidateParents: [] } });
    const r2 = await a.next();
    if (r2.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${r2.response?.$case}`);
    const ids = r2.response.normalTaskResponse.candidateParents.map((p) => p.id);
    expect(ids).not.toContain("peer-a1");
    expect(ids.length).toBeGreaterThan(0);
    expect(handle.resource.hosts.get("10.0.0.1-a")?.uploadFailedCount).toBe(failedBefore + 1);
    a.send({ $case: "downloadPeerFailedRequest", downloadPeerFailedRequest: { description: "test" } });
    expect((await a.status).code).toBe(status.OK);
    const stat = await unaryCall(client.statPeer.bind(client), { hostId: "10.0.0.4-d", taskId: tid("bts"), peerId: "peer-d1" });
    expect(stat.state).toBe("Failed");
  });

  it("empty task: zero content length answers EmptyTaskResponse", async () => {
    const a = new Announce(client, "10.0.0.1-a", tid("empty"), "peer-empty");
    a.register(download(url("empty"), 0));
    const r = await a.next();
    expect(r.response?.$case).toBe("emptyTaskResponse");
    a.send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
    a.send({ $case: "downloadPeerFinishedRequest", downloadPeerFinishedRequest: {} });
    expect((await a.status).code).toBe(status.OK);
  });

  it("metadata-only: a local cache hit gets MetadataOnlyResponse, then Started + Finished", async () => {
    const a = new Announce(client, "10.0.0.5-e", tid("cached"), "peer-meta");
    a.register(download(url("cached"), LEN, { metadataOnly: true }));
    const r = await a.next();
    expect(r.response?.$case).toBe("metadataOnlyResponse");
    a.send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
    a.send({ $case: "downloadPeerFinishedRequest", downloadPeerFinishedRequest: {} });
    expect((await a.status).code).toBe(status.OK);
    const stat = await unaryCall(client.statPeer.bind(client), { hostId: "10.0.0.5-e", taskId: tid("cached"), peerId: "peer-meta" });
    expect(stat.state).toBe("Succeeded");
  });

  it("seed trigger: the first download asks the seed (DownloadTask, need_back_to_source) and offers it as parent", async () => {
    seed = await startFakeSeed(handle.grpcPort, "127.0.0.1-seed-seed");
    await announceHost(client, hostMsg("127.0.0.1-seed-seed", { type: 1, port: seed.port, maxTx: 10e9 }));
    const a = new Announce(client, "10.0.0.2-b", tid("seeded"), "peer-b-seeded");
    a.register(download(url("seeded"), LEN));
    const r = await a.next();
    if (r.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${r.response?.$case}`);
    expect(r.response.normalTaskResponse.candidateParents[0]?.host?.id).toBe("127.0.0.1-seed-seed");
    expect(seed.requests).toHaveLength(1);
    expect(seed.requests[0]?.download?.url).toBe(url("seeded"));
    expect(seed.requests[0]?.download?.needBackToSource).toBe(true);
    a.send({ $case: "downloadPeerFailedRequest", downloadPeerFailedRequest: {} });
    expect((await a.status).code).toBe(status.OK);
  });

  it("LEVEL3 sends the first peer to the origin itself even with a seed available", async () => {
    const a = new Announce(client, "10.0.0.3-c", tid("level3"), "peer-l3");
    a.register(download(url("level3"), LEN, { priority: Priority.LEVEL3 }));
    expect((await a.next()).response?.$case).toBe("needBackToSourceResponse");
    a.call.end();
    expect((await a.status).code).toBe(status.OK);
  });

  it("PreheatFile (single_seed_peer) triggers the seed; StatFile lists the peers holding it", async () => {
    const before = seed.requests.length;
    await unaryCall(client.preheatFile.bind(client), { url: url("preheat"), scope: "single_seed_peer", filteredQueryParams: [], header: {}, ips: [], priority: 0, certificateChain: [], insecureSkipVerify: false });
    await expect.poll(() => seed.requests.length, { timeout: 5000 }).toBe(before + 1);
    expect(seed.requests[before]?.download?.url).toBe(url("preheat"));
    const stat = await unaryCall(client.statFile.bind(client), { url: url("bts"), filteredQueryParams: [], header: {}, certificateChain: [], insecureSkipVerify: false });
    expect(stat.peers.map((p) => p.hostname).sort()).toContain("10-0-0-1-a");
    const bad = unaryCall(client.preheatFile.bind(client), { url: url("x"), scope: "everyone", filteredQueryParams: [], header: {}, ips: [], priority: 0, certificateChain: [], insecureSkipVerify: false });
    await expect(bad).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  });

  it("vouched digests: back-to-source reports fix each piece's digest, StatTask hands them out, conflicts are kept out and counted", async () => {
    const name = "vouch";
    const blake = (n: number, c = "a") => `blake3:${String(n).padStart(2, "0")}${c.repeat(62)}`;
    const a = new Announce(client, "10.0.0.4-d", tid(name), "peer-d-vouch");
    // LEVEL3: to the origin itself, though an earlier test's seed is available.
    a.register(download(url(name), LEN, { priority: Priority.LEVEL3 }));
    const r = await a.next();
    expect(r.response?.$case).toBe("needBackToSourceResponse");
    a.send({ $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} });
    for (let n = 0; n < 3; n++) a.send({ $case: "downloadPieceBackToSourceFinishedRequest", downloadPieceBackToSourceFinishedRequest: { piece: { ...piece(n, PL, Math.min(PL, LEN - n * PL)), digest: blake(n) } } });
    // A second report of piece 1 with another BLAKE3 does not replace the first.
    a.send({ $case: "downloadPieceBackToSourceFinishedRequest", downloadPieceBackToSourceFinishedRequest: { piece: { ...piece(1, PL, PL), digest: blake(1, "b") } } });
    const conflicts = async () => (await (await fetch(`http://127.0.0.1:${handle.metricsPort}/metrics`)).text()).match(/dragonfly_scheduler_piece_digest_conflict_total\{task_type="STANDARD",host_type="normal"\} (\d+)/)?.[1];
    await until(async () => (await conflicts()) === "1", "the conflicting report counted");
    const task = await unaryCall(client.statTask.bind(client), { hostId: "10.0.0.5-e", taskId: tid(name) });
    expect(task.pieces.map((p) => [p.number, p.digest])).toEqual([0, 1, 2].map((n) => [n, blake(n)]));
    // Children are told it fetched from the origin: its pieces may be taken before their digests are known.
    const child = new Announce(client, "10.0.0.5-e", tid(name), "peer-e-vouch");
    child.register(download(url(name), LEN));
    const c = await child.next();
    if (c.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${c.response?.$case}`);
    expect(c.response.normalTaskResponse.candidateParents.find((p) => p.id === "peer-d-vouch")?.needBackToSource).toBe(true);
    // Leaves its parents as it goes, so later tests find every upload slot free.
    child.send({ $case: "downloadPeerFailedRequest", downloadPeerFailedRequest: { description: "test done" } });
    expect((await child.status).code).toBe(status.OK);
    a.send({ $case: "downloadPeerBackToSourceFinishedRequest", downloadPeerBackToSourceFinishedRequest: {} });
    expect((await a.status).code).toBe(status.OK);
  });

  it("exports dragonfly_scheduler_* and grpc_server_handled_total on /metrics", async () => {
    const text = await (await fetch(`http://127.0.0.1:${handle.metricsPort}/metrics`)).text();
    expect(text).toMatch(/dragonfly_scheduler_register_peer_total\{priority="LEVEL0",task_type="STANDARD",host_type="normal"\} \d+/);
    expect(text).toMatch(/dragonfly_scheduler_download_peer_finished_total/);
    expect(text).toMatch(/grpc_server_handled_total\{grpc_type="bidi_stream",grpc_service="scheduler\.v2\.Scheduler",grpc_method="AnnouncePeer",grpc_code="OK"\} \d+/);
    expect(text).toMatch(/grpc_server_handled_total\{grpc_type="unary",grpc_service="scheduler\.v2\.Scheduler",grpc_method="AnnounceHost",grpc_code="OK"\} \d+/);
    expect(text).toMatch(/grpc_server_started_total\{grpc_type="unary",grpc_service="scheduler\.v2\.Scheduler",grpc_method="StatTask"\}/);
  });
});

describe("scheduler bad input", () => {
  async function expectStreamStatus(a: Announce, code: status, message: RegExp): Promise<void> {
    const s = await a.status;
    expect(s.code).toBe(code);
    expect(s.details).toMatch(message);
  }

  it("missing request oneof → INVALID_ARGUMENT", async () => {
    const a = new Announce(client, "10.0.0.1-a", tid("bad1"), "bad-peer-1");
    a.send(undefined);
    await expectStreamStatus(a, status.INVALID_ARGUMENT, /request is required/);
  });

  it("register on an unknown host → NOT_FOUND", async () => {
    const a = new Announce(client, "10.9.9.9-nobody", tid("bad2"), "bad-peer-2");
    a.register(download(url("bad2"), LEN));
    await expectStreamStatus(a, status.NOT_FOUND, /host 10\.9\.9\.9-nobody not found/);
  });

  it("request for a peer that never registered → NOT_FOUND", async () => {
    const a = new Announce(client, "10.0.0.1-a", tid("bad3"), "ghost");
    a.send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
    await expectStreamStatus(a, status.NOT_FOUND, /peer ghost not found/);
  });

  it("piece number out of range → INVALID_ARGUMENT", async () => {
    const a = new Announce(client, "10.0.0.1-a", tid("bad4"), "bad-peer-4");
    a.register(download(url("bad4"), LEN, { needBackToSource: true }));
    expect((await a.next()).response?.$case).toBe("needBackToSourceResponse");
    a.send({ $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} });
    a.send({ $case: "downloadPieceBackToSourceFinishedRequest", downloadPieceBackToSourceFinishedRequest: { piece: piece(7, PL, PL) } });
    await expectStreamStatus(a, status.INVALID_ARGUMENT, /piece number 7 is out of range/);
  });

  it("content length contradicting the piece count → INVALID_ARGUMENT", async () => {
    const a = new Announce(client, "10.0.0.1-a", tid("bad5"), "bad-peer-5");
    a.register(download(url("bad5"), LEN, { pieceCount: 9 }));
    await expectStreamStatus(a, status.INVALID_ARGUMENT, /actual_piece_count 9 contradicts/);
  });

  it("piece report without cost → INVALID_ARGUMENT", async () => {
    const a = new Announce(client, "10.0.0.1-a", tid("bad6"), "bad-peer-6");
    a.register(download(url("bad6"), LEN, { needBackToSource: true }));
    await a.next();
    a.send({ $case: "downloadPieceBackToSourceFinishedRequest", downloadPieceBackToSourceFinishedRequest: { piece: { ...piece(0, PL, PL), cost: undefined } } });
    await expectStreamStatus(a, status.INVALID_ARGUMENT, /piece\.cost is required/);
  });

  it("oversized strings → INVALID_ARGUMENT", async () => {
    const a = new Announce(client, "10.0.0.1-a", "x".repeat(5000), "bad-peer-7");
    a.register(download(url("bad7"), LEN));
    await expectStreamStatus(a, status.INVALID_ARGUMENT, /task_id is 5000 characters long/);
    const b = new Announce(client, "10.0.0.1-a", tid("bad8"), "bad-peer-8");
    b.register(download(`https://origin.example.com/${"a".repeat(9000)}`, LEN));
    await expectStreamStatus(b, status.INVALID_ARGUMENT, /download\.url is \d+ characters long/);
  });

  it("LEVEL1 first download is forbidden → FAILED_PRECONDITION", async () => {
    const a = new Announce(client, "10.0.0.1-a", tid("bad9"), "bad-peer-9");
    a.register(download(url("bad9"), LEN, { priority: Priority.LEVEL1 }));
    await expectStreamStatus(a, status.FAILED_PRECONDITION, /LEVEL1 peer is forbidden/);
  });

  it("state machine violations → FAILED_PRECONDITION", async () => {
    const a = new Announce(client, "10.0.0.1-a", tid("bad10"), "bad-peer-10");
    a.register(download(url("bad10"), 0));
    expect((await a.next()).response?.$case).toBe("emptyTaskResponse");
    a.send({ $case: "downloadPeerBackToSourceFinishedRequest", downloadPeerBackToSourceFinishedRequest: {} });
    expect((await a.status).code).toBe(status.OK);
    const b = new Announce(client, "10.0.0.1-a", tid("bad10"), "bad-peer-10");
    b.send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
    await expectStreamStatus(b, status.FAILED_PRECONDITION, /inappropriate in current state Succeeded/);
  });

  it("AnnounceHost with a link-local or unspecified address, bad ports or no hostname → INVALID_ARGUMENT", async () => {
    await expect(announceHost(client, hostMsg("meta", { ip: "169.254.169.254" }))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/link-local/) as unknown });
    await expect(announceHost(client, hostMsg("zero", { ip: "0.0.0.0" }))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    await expect(announceHost(client, hostMsg("lowport", { port: 80 }))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/host\.port 80/) as unknown });
    await expect(announceHost(client, { ...hostMsg("nohost"), hostname: "" })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/hostname is required/) as unknown });
    await expect(unaryCall(client.announceHost.bind(client), { host: undefined })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  });

  it("unknown task/host on unary RPCs → NOT_FOUND; unserved RPCs → UNIMPLEMENTED", async () => {
    await expect(unaryCall(client.statTask.bind(client), { hostId: "h", taskId: tid("nope") })).rejects.toMatchObject({ code: status.NOT_FOUND });
    await expect(unaryCall(client.deleteHost.bind(client), { hostId: "nope" })).rejects.toMatchObject({ code: status.NOT_FOUND });
    await expect(unaryCall(client.statCacheTask.bind(client), { hostId: "h", taskId: "t" })).rejects.toMatchObject({ code: status.UNIMPLEMENTED });
    // PreheatImage is served: a registry it may not reach is a bad argument, not UNIMPLEMENTED.
    await expect(unaryCall(client.preheatImage.bind(client), { url: "http://127.0.0.1:9/v2/x/manifests/latest", filteredQueryParams: [], header: {}, scope: "", ips: [], priority: 0, certificateChain: [], insecureSkipVerify: false })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/failed to resolve manifests: .*SSRF/) as unknown,
    });
  });
});

describe("scheduler retry limits and host lifecycle", () => {
  it("fails with FAILED_PRECONDITION after retryLimit when the origin quota is used up", async () => {
    const { handle: h2, client: c2 } = await startTestScheduler({ seedPeer: { enable: false }, scheduler: { retryInterval: "5ms", retryLimit: 3, backToSourceCount: 0 } });
    try {
      await announceHost(c2, hostMsg("10.1.0.1-a"));
      await announceHost(c2, hostMsg("10.1.0.2-b"));
      const first = new Announce(c2, "10.1.0.1-a", tid("quota"), "q1");
      first.register(download(url("quota"), LEN));
      expect((await first.next()).response?.$case).toBe("needBackToSourceResponse");
      first.send({ $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} });
      // q1 is still fetching from the origin but has no pieces yet: for a normal host that is
      // a valid parent only in BackToSource state, which it is; block it via reschedule.
      const second = new Announce(c2, "10.1.0.2-b", tid("quota"), "q2");
      second.register(download(url("quota"), LEN));
      const r = await second.next();
      if (r.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${r.response?.$case}`);
      second.send({ $case: "reschedulePeerRequest", reschedulePeerRequest: { candidateParents: r.response.normalTaskResponse.candidateParents } });
      const s = await second.status;
      expect(s.code).toBe(status.FAILED_PRECONDITION);
      expect(s.details).toMatch(/RetryLimit/);
      first.call.end();
      await first.status;
    } finally {
      c2.close();
      await h2.close();
    }
  });

  it("the first peer of a new task gets the seed peer as parent once the seed starts, not after a retry interval", async () => {
    // An hour between rounds: without the wake-up on the seed's start this would hang.
    const { handle: h2, client: c2 } = await startTestScheduler({ scheduler: { retryInterval: "1h", retryBackToSourceLimit: 3, retryLimit: 5 } });
    const fake = await startFakeSeed(h2.grpcPort, "127.0.0.1-seed-seed");
    try {
      await announceHost(c2, hostMsg("127.0.0.1-seed-seed", { type: 1, port: fake.port, maxTx: 10e9 }));
      await announceHost(c2, hostMsg("10.2.0.1-a"));
      const a = new Announce(c2, "10.2.0.1-a", tid("woken"), "peer-woken");
      a.register(download(url("woken"), LEN));
      const r = await a.next();
      if (r.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${r.response?.$case}`);
      expect(r.response.normalTaskResponse.candidateParents.map((p) => p.host?.id)).toEqual(["127.0.0.1-seed-seed"]);
      expect(fake.requests).toHaveLength(1);
      a.send({ $case: "downloadPeerFailedRequest", downloadPeerFailedRequest: {} });
      expect((await a.status).code).toBe(status.OK);
    } finally {
      c2.close();
      await fake.close();
      await h2.close();
    }
  });

  it("ListHosts filters by type; DeleteHost removes the host and its peers", async () => {
    const all = await unaryCall(client.listHosts.bind(client), {});
    expect(all.hosts.length).toBeGreaterThanOrEqual(6);
    const seeds = await unaryCall(client.listHosts.bind(client), { type: 1 });
    expect(seeds.hosts.map((h) => h.id)).toEqual(["127.0.0.1-seed-seed"]);
    await announceHost(client, hostMsg("10.0.0.9-gone"));
    const a = new Announce(client, "10.0.0.9-gone", tid("bts"), "peer-gone");
    a.register(download(url("bts"), LEN));
    await a.next();
    expect(handle.resource.peers.has("peer-gone")).toBe(true);
    await unaryCall(client.deleteHost.bind(client), { hostId: "10.0.0.9-gone" });
    expect(handle.resource.peers.has("peer-gone")).toBe(false);
    expect(handle.resource.hosts.has("10.0.0.9-gone")).toBe(false);
    a.call.end();
    await a.status;
  });

  it("many concurrent streams joining and leaving keep the DAG and upload counts consistent", async () => {
    const name = "crowd";
    await backToSourcePeer("10.0.0.1-a", name, "crowd-root");
    const hosts = ["10.0.0.2-b", "10.0.0.3-c", "10.0.0.4-d", "10.0.0.5-e"];
    const streams = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const a = new Announce(client, hosts[i % hosts.length] ?? "", tid(name), `crowd-${i}`);
        a.register(download(url(name), LEN));
        const r = await a.next();
        // Parents are drawn from a random sample of 15 peers, most of which are not serving
        // yet, so some peers exhaust their retries and are sent to the origin: both are valid.
        if (r.response?.$case === "normalTaskResponse") a.send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });
        else a.send({ $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} });
        return { a, r, i };
      }),
    );
    const kinds = streams.map((s) => s.r.response?.$case);
    expect(kinds.every((k) => k === "normalTaskResponse" || k === "needBackToSourceResponse")).toBe(true);
    expect(kinds.filter((k) => k === "normalTaskResponse").length).toBeGreaterThan(0);
    // Half finish, half are deleted while others still download.
    await Promise.all(
      streams.map(async ({ a, i }) => {
        if (i % 2 === 0 && streams[i]?.r.response?.$case === "normalTaskResponse") a.send({ $case: "downloadPeerFinishedRequest", downloadPeerFinishedRequest: {} });
        else if (i % 2 === 0) a.send({ $case: "downloadPeerBackToSourceFinishedRequest", downloadPeerBackToSourceFinishedRequest: {} });
        else await unaryCall(client.deletePeer.bind(client), { hostId: a.hostId, taskId: a.taskId, peerId: a.peerId });
        if (i % 2 === 1) a.call.end();
        await a.status;
      }),
    );
    const task = handle.resource.tasks.get(tid(name));
    expect(task).toBeDefined();
    let edges = 0;
    for (const p of task?.dag.values() ?? []) {
      for (const parent of p.parents()) {
        expect(task?.dag.has(parent.id)).toBe(true);
        edges++;
      }
    }
    // Everyone finished or left: nobody holds a parent any more.
    expect(edges).toBe(0);
    for (const h of handle.resource.hosts.values()) expect(h.concurrentUploadCount).toBe(0);
  });
});
