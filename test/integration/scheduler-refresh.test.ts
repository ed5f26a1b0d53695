// Parent top-up over a real AnnouncePeer stream: a peer downloading from its first parent
// gets a second NormalTaskResponse (existing parent first) once another peer starts serving.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { taskIdFromUrl } from "../../src/common/ids.js";
import type { SchedulerClient } from "../../src/gen/scheduler/v2/scheduler.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { Announce, announceHost, download, hostMsg, MiB, piece, startTestScheduler } from "./scheduler-helpers.js";

let handle: SchedulerHandle;
let client: InstanceType<typeof SchedulerClient>;

const PL = 4 * MiB;
const LEN = 10 * MiB;
const url = "https://origin.example.com/refresh";
const taskId = taskIdFromUrl({ url });

beforeAll(async () => {
  ({ handle, client } = await startTestScheduler({ scheduler: { retryInterval: "20ms", parentRefreshInterval: "50ms" } }));
  for (const h of ["10.0.0.1-a", "10.0.0.2-b", "10.0.0.3-c"]) await announceHost(client, hostMsg(h, { port: 4000 }));
});

afterAll(async () => {
  client.close();
  await handle.close();
});

async function toSource(hostId: string, peerId: string): Promise<Announce> {
  const a = new Announce(client, hostId, taskId, peerId);
  a.register(download(url, LEN, { needBackToSource: true }));
  expect((await a.next()).response?.$case).toBe("needBackToSourceResponse");
  a.send({ $case: "downloadPeerBackToSourceStartedRequest", downloadPeerBackToSourceStartedRequest: {} });
  return a;
}

describe("scheduler parent top-up", () => {
  it("sends a running peer another NormalTaskResponse with the parent that started serving", async () => {
    const a = await toSource("10.0.0.1-a", "peer-a");
    const b = new Announce(client, "10.0.0.2-b", taskId, "peer-b");
    b.register(download(url, LEN));
    const first = await b.next();
    if (first.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${first.response?.$case}`);
    expect(first.response.normalTaskResponse.candidateParents.map((p) => p.id)).toEqual(["peer-a"]);
    b.send({ $case: "downloadPeerStartedRequest", downloadPeerStartedRequest: {} });

    const c = await toSource("10.0.0.3-c", "peer-c");
    const second = await b.next();
    if (second.response?.$case !== "normalTaskResponse") throw new Error(`expected normal, got ${second.response?.$case}`);
    expect(second.response.normalTaskResponse.candidateParents.map((p) => p.id)).toEqual(["peer-a", "peer-c"]);
    expect(handle.resource.peers.get("peer-b")?.parents().map((p) => p.id).sort()).toEqual(["peer-a", "peer-c"]);

    // Pieces from either parent are accepted; finishing releases both upload slots.
    b.send({ $case: "downloadPieceFinishedRequest", downloadPieceFinishedRequest: { piece: piece(0, PL, PL, "peer-a") } });
    b.send({ $case: "downloadPieceFinishedRequest", downloadPieceFinishedRequest: { piece: piece(1, PL, PL, "peer-c") } });
    b.send({ $case: "downloadPieceFinishedRequest", downloadPieceFinishedRequest: { piece: piece(2, PL, LEN - 2 * PL, "peer-c") } });
    b.send({ $case: "downloadPeerFinishedRequest", downloadPeerFinishedRequest: {} });
    expect((await b.status).code).toBe(status.OK);
    expect(handle.resource.hosts.get("10.0.0.3-c")?.concurrentUploadCount).toBe(0);
    a.call.end();
    c.call.end();
    await Promise.all([a.status, c.status]);
  });
});
