// A scheduler running mTLS takes an announced host for the host its caller's certificate names
// (issue 21): AnnounceHost under a name the certificate does not carry (its Damselfly name, CN or
// a SAN DNS name) is PERMISSION_DENIED, and a host id, once announced, is re-announced, deleted,
// downloaded as (AnnouncePeer) and cleaned up (DeleteTask, DeletePeer) only by certificates that
// name that host. Each refusal is logged once per caller and RPC. Plaintext schedulers keep
// taking hosts on their word (scheduler-announce.test.ts announces arbitrary names in plaintext).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { channelCredentials, loadTls, type TlsFiles } from "../../src/common/grpc/tls.js";
import { createLogger } from "../../src/common/logger.js";
import { createRegistry } from "../../src/common/metrics.js";
import { issueLeaf } from "../../src/common/tls/pki.js";
import type { AnnouncePeerRequest } from "../../src/gen/scheduler/v2/scheduler.js";
import { SchedulerClient } from "../../src/gen/scheduler/v2/scheduler.js";
import { PeerState } from "../../src/scheduler/resource/peer.js";
import { startScheduler, type SchedulerHandle } from "../../src/scheduler/server.js";
import { stackCertificates } from "../../src/up/pki.js";
import { Announce, announceHost, download, codeOf, hostMsg, unaryCall } from "./scheduler-helpers.js";

const work = mkdtempSync(join(tmpdir(), "host-binding-"));
const logLines: string[] = [];
let certs: Map<string, TlsFiles>;
let scheduler: SchedulerHandle;
const clients = new Map<Caller, SchedulerClient>();

/** Certificates of one cluster CA: two peers, and one named by an operator's PKI with an FQDN SAN. */
type Caller = "peer-a" | "peer-b" | "host-c";
const B = "127.0.0.1-peer-b";
const TASK = "binding-task";
const B_PEER = "peer-b-1";

function client(caller: Caller): SchedulerClient {
  let c = clients.get(caller);
  if (!c) {
    c = new SchedulerClient(`127.0.0.1:${scheduler.grpcPort}`, channelCredentials(loadTls(certs.get(caller), caller), ["scheduler"]));
    clients.set(caller, c);
  }
  return c;
}

/** One AnnouncePeer request as `caller`, then half-close: OK once the scheduler took it, else the refusal. */
async function announcePeer(caller: Caller, hostId: string, peerId: string, request: AnnouncePeerRequest["request"]): Promise<number> {
  const a = new Announce(client(caller), hostId, TASK, peerId);
  a.send(request);
  a.call.end();
  return (await a.status).code;
}

const register = { $case: "registerPeerRequest", registerPeerRequest: { download: download("http://127.0.0.1:9/binding", 1024, { metadataOnly: true }) } } as const;

beforeAll(async () => {
  const pki = join(work, "pki");
  certs = await stackCertificates(pki, [
    { name: "scheduler", role: "scheduler" },
    { name: "peer-a", role: "peer" },
    { name: "peer-b", role: "peer" },
  ]);
  // A host whose daemon announces its FQDN, as Dragonfly's client does by default, with a
  // certificate that carries it as a SAN DNS name.
  const leaf = await issueLeaf({ cert: readFileSync(join(pki, "ca.pem"), "utf8"), key: readFileSync(join(pki, "ca-key.pem"), "utf8") }, { role: "peer", name: "host-c", addresses: ["127.0.0.1", "host-c.example.com"] });
  const hostC = { caCert: join(pki, "ca.pem"), cert: join(work, "host-c.pem"), key: join(work, "host-c-key.pem") };
  writeFileSync(hostC.cert, leaf.cert);
  writeFileSync(hostC.key, leaf.key, { mode: 0o600 });
  certs.set("host-c", hostC);
  scheduler = await startScheduler(
    { server: { listenIP: "127.0.0.1", port: 0, tls: certs.get("scheduler") }, metrics: { enable: false }, seedPeer: { enable: false } },
    { logger: createLogger({ component: "scheduler" }, { write: (s: string) => logLines.push(s) }), registry: createRegistry(false) },
  );
  // Host B, announced by its own certificate, with a peer of TASK.
  await announceHost(client("peer-b"), hostMsg(B, { hostname: "peer-b" }));
  expect(await announcePeer("peer-b", B, B_PEER, register)).toBe(status.OK);
}, 60_000);

afterAll(async () => {
  for (const c of clients.values()) c.close();
  await scheduler?.close();
  rmSync(work, { recursive: true, force: true });
});

describe("a scheduler running mTLS binds hosts to their certificates", () => {
  interface Case {
    what: string;
    caller: Caller;
    act: (caller: Caller) => Promise<number>;
    code: status;
    /** What the scheduler holds afterwards. */
    then: () => void;
  }
  const hostB = () => scheduler.resource.hosts.get(B);
  const cases: Case[] = [
    {
      what: "A's certificate announcing hostname B",
      caller: "peer-a",
      act: (c) => codeOf(announceHost(client(c), hostMsg("127.0.0.1-a-as-b", { hostname: "peer-b" }))),
      code: status.PERMISSION_DENIED,
      then: () => expect(scheduler.resource.hosts.has("127.0.0.1-a-as-b")).toBe(false),
    },
    {
      what: "A's certificate announcing hostname A",
      caller: "peer-a",
      act: (c) => codeOf(announceHost(client(c), hostMsg("127.0.0.1-peer-a", { hostname: "peer-a" }))),
      code: status.OK,
      then: () => expect(scheduler.resource.hosts.get("127.0.0.1-peer-a")?.hostname).toBe("peer-a"),
    },
    {
      what: "a certificate announcing its SAN DNS name",
      caller: "host-c",
      act: (c) => codeOf(announceHost(client(c), hostMsg("127.0.0.1-host-c", { hostname: "host-c.example.com" }))),
      code: status.OK,
      then: () => expect(scheduler.resource.hosts.get("127.0.0.1-host-c")?.hostname).toBe("host-c.example.com"),
    },
    {
      what: "A's certificate re-announcing B's host id under its own name",
      caller: "peer-a",
      act: (c) => codeOf(announceHost(client(c), hostMsg(B, { hostname: "peer-a", port: 4100 }))),
      code: status.PERMISSION_DENIED,
      then: () => expect(hostB()?.message).toMatchObject({ hostname: "peer-b", port: 4000 }),
    },
    {
      what: "A's certificate registering a peer on B's host id",
      caller: "peer-a",
      act: (c) => announcePeer(c, B, "a-on-b", register),
      code: status.PERMISSION_DENIED,
      then: () => expect(scheduler.resource.peers.has("a-on-b")).toBe(false),
    },
    {
      what: "A's certificate reporting for B's peer",
      caller: "peer-a",
      act: (c) => announcePeer(c, B, B_PEER, { $case: "downloadPeerFailedRequest", downloadPeerFailedRequest: { description: "not yours" } }),
      code: status.PERMISSION_DENIED,
      then: () => expect(scheduler.resource.peers.get(B_PEER)?.fsm.current).not.toBe(PeerState.Failed),
    },
    {
      what: "A's certificate registering a peer on its own host",
      caller: "peer-a",
      act: (c) => announcePeer(c, "127.0.0.1-peer-a", "peer-a-1", register),
      code: status.OK,
      then: () => expect(scheduler.resource.peers.get("peer-a-1")?.host.id).toBe("127.0.0.1-peer-a"),
    },
    {
      what: "A's certificate deleting B's task",
      caller: "peer-a",
      act: (c) => codeOf(unaryCall(client(c).deleteTask.bind(client(c)), { hostId: B, taskId: TASK })),
      code: status.PERMISSION_DENIED,
      then: () => expect(scheduler.resource.peers.has(B_PEER)).toBe(true),
    },
    {
      what: "A's certificate deleting B's peer",
      caller: "peer-a",
      act: (c) => codeOf(unaryCall(client(c).deletePeer.bind(client(c)), { hostId: B, taskId: TASK, peerId: B_PEER })),
      code: status.PERMISSION_DENIED,
      then: () => expect(scheduler.resource.peers.has(B_PEER)).toBe(true),
    },
    {
      what: "A's certificate deleting host B",
      caller: "peer-a",
      act: (c) => codeOf(unaryCall(client(c).deleteHost.bind(client(c)), { hostId: B })),
      code: status.PERMISSION_DENIED,
      then: () => expect(hostB()).toBeDefined(),
    },
    {
      what: "B's certificate deleting host B",
      caller: "peer-b",
      act: (c) => codeOf(unaryCall(client(c).deleteHost.bind(client(c)), { hostId: B })),
      code: status.OK,
      then: () => expect(hostB()).toBeUndefined(),
    },
  ];

  it.each(cases)("$what", async (c) => {
    expect(await c.act(c.caller)).toBe(c.code);
    c.then();
  });

  it("names the host and the certificate's names in the refusal, and logs it once per caller and RPC", async () => {
    const err = await announceHost(client("peer-a"), hostMsg("127.0.0.1-a-as-b", { hostname: "peer-b" })).catch((e: ServiceError) => e);
    expect(err?.details).toMatch(/^AnnounceHost: host peer-b is not a host the caller's certificate names \(it names peer-a, localhost\)$/);
    const denials = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "permission denied (logged once per caller)" && l.caller === "peer peer-a");
    expect(denials.filter((l) => l.rpc === "AnnounceHost")).toMatchObject([{ hostname: "peer-b" }]);
    expect(denials.map((l) => l.rpc).sort()).toEqual(["AnnounceHost", "AnnounceHost over another host's id", "AnnouncePeer", "DeleteHost", "DeletePeer", "DeleteTask"]);
  });
});
