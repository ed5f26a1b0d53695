// The command channel (issue 25) on a manager running mTLS: the host is the one its certificate
// names and its clusters are the manager's records, not the Hello's word. A peer on record
// (REST /api/v1/peers, as sync_peers records it) joins with its record's cluster and answers a
// command; a Hello naming another host than the certificate, a certificate whose host the
// manager does not know, and a scheduler's certificate are refused with PERMISSION_DENIED.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { channelCredentials, loadTls, type TlsFiles } from "../../src/common/grpc/tls.js";
import { silentLogger } from "../../src/common/logger.js";
import { HostCommandsClient, type Command, type CommandChannelRequest, type Hello } from "../../src/gen/damselfly/manager/v1/commands.js";
import { startManager, type ManagerHandle } from "../../src/manager/server.js";
import { stackCertificates } from "../../src/up/pki.js";
import { restClient, type RestCall } from "../helpers/manager-api.js";
import { until } from "../helpers/until.js";

const ROOT_PASSWORD = "commands-mtls-root";
const work = mkdtempSync(join(tmpdir(), "commands-mtls-"));
let certs: Map<string, TlsFiles>;
let manager: ManagerHandle;
let api: RestCall;
let root: string;

const hello = (hostname: string): Hello => ({ hostId: "", hostname, ip: "127.0.0.1", seedPeer: false, schedulerClusterId: 0, version: "test" });

/** Opens Connect with `cert`'s identity and sends `h`; the stream's commands and its end. */
function connect(cert: string, h: Hello) {
  const client = new HostCommandsClient(`127.0.0.1:${manager.grpcPort}`, channelCredentials(loadTls(certs.get(cert), cert), ["manager"]));
  const call = client.connect(new Metadata());
  const commands: Command[] = [];
  const ended = new Promise<ServiceError | undefined>((resolve) => {
    call.on("error", (e: ServiceError) => resolve(e));
    call.on("end", () => resolve(undefined));
  });
  call.on("data", (c: Command) => commands.push(c));
  call.write({ request: { $case: "hello", hello: h } } satisfies CommandChannelRequest);
  return { call, commands, ended, close: () => (call.cancel(), client.close()) };
}

beforeAll(async () => {
  certs = await stackCertificates(join(work, "pki"), [
    { name: "manager", role: "manager" },
    { name: "peer-a", role: "peer" },
    { name: "stranger", role: "peer" },
    { name: "scheduler-a", role: "scheduler" },
  ]);
  manager = await startManager(
    { server: { dataDir: join(work, "manager"), logLevel: "silent", rest: { addr: "127.0.0.1:0" }, grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 }, tls: certs.get("manager") } }, metrics: { enable: false } },
    { logger: silentLogger(), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: ROOT_PASSWORD } },
  );
  api = restClient(`http://127.0.0.1:${manager.restPort}`);
  root = (await api<{ token: string }>("POST", "/api/v1/users/signin", undefined, { name: "root", password: ROOT_PASSWORD })).body.token;
  const peer = await api("POST", "/api/v1/peers", root, { host_name: "peer-a", type: "normal", ip: "127.0.0.1", port: 4000, download_port: 4001, proxy_port: 4002, scheduler_cluster_id: 1 });
  expect(peer.status).toBe(200);
}, 120_000);

afterAll(async () => {
  await manager?.close();
  rmSync(work, { recursive: true, force: true });
});

describe("command channel under mTLS", () => {
  it("takes a peer on record with its recorded cluster, and carries a command and its result", async () => {
    // The Hello claims no cluster: the record (cluster 1) decides.
    const s = connect("peer-a", hello("peer-a"));
    try {
      await until(async () => (await api<unknown[]>("GET", "/api/v1/commands/hosts", root)).body.length === 1, "peer-a on the channel");
      const hosts = (await api<Array<{ host_id: string; scheduler_cluster_ids: number[] }>>("GET", "/api/v1/commands/hosts", root)).body;
      expect(hosts).toEqual([expect.objectContaining({ host_id: "127.0.0.1-peer-a", scheduler_cluster_ids: [1] })]);
      const sent = await api<{ id: number; state: string }>("POST", "/api/v1/commands", root, { type: "set_log_level", scheduler_cluster_id: 1, args: { level: "warn" } });
      expect(sent.status).toBe(200);
      await until(() => s.commands.length === 1, "the command down the stream");
      expect(s.commands[0]).toEqual({ id: String(sent.body.id), command: { $case: "setLogLevel", setLogLevel: { level: "warn" } } });
      s.call.write({ request: { $case: "result", result: { commandId: String(sent.body.id), error: "", tasksRemoved: 0, bytesFreed: 0, previousLogLevel: "info", schedulers: [], schedulersChanged: false } } });
      await until(async () => (await api<{ state: string }>("GET", `/api/v1/commands/${sent.body.id}`, root)).body.state === "SUCCESS", "the command done");
      const done = await api<{ results: unknown[] }>("GET", `/api/v1/commands/${sent.body.id}`, root);
      expect(done.body.results).toEqual([expect.objectContaining({ host_id: "127.0.0.1-peer-a", state: "SUCCESS", result: { previous_log_level: "info" } })]);
    } finally {
      s.close();
    }
  });

  it.each([
    { what: "a Hello naming another host than the certificate", cert: "peer-a", name: "peer-b", details: /certificate is for peer peer-a, the hello says peer peer-b/ },
    { what: "a peer the manager has no record of", cert: "stranger", name: "stranger", details: /peer stranger is not on record at this manager/ },
    { what: "a scheduler's certificate", cert: "scheduler-a", name: "scheduler-a", details: /needs a peer or seed-peer certificate; caller is scheduler scheduler-a/ },
  ])("refuses $what", async ({ cert, name, details }) => {
    const s = connect(cert, hello(name));
    try {
      const err = await s.ended;
      expect(err?.code).toBe(status.PERMISSION_DENIED);
      expect(err?.details).toMatch(details);
    } finally {
      s.close();
    }
  });
});
