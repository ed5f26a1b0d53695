// damselfly.manager.v1.HostCommands on the manager's gRPC port: each daemon holds one Connect
// stream (its first message a Hello), and the command hub (commands/hub.ts) writes commands
// down it and takes the results that come back. Who the host is and which clusters it is in:
//   - under mTLS, the CA's word and the manager's records: a peer or seed-peer certificate whose
//     name is the Hello's hostname, and the scheduler clusters tenant-access.ts has the host on
//     record in (a host the manager has no record of is refused, as for TenantKeys);
//   - in plaintext, the Hello's word (host id, cluster), as every RPC of a plaintext cluster is
//     (common/grpc/authz.ts).
import { isIP } from "node:net";
import { status, type ServerDuplexStream, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "../../common/logger.js";
import { Authorizer } from "../../common/grpc/authz.js";
import { hostId as makeHostId } from "../../common/ids.js";
import { errorMessage } from "../../common/errors.js";
import type { Identity } from "../../common/tls/identity.js";
import type { Command, CommandChannelRequest, Hello } from "../../gen/damselfly/manager/v1/commands.js";
import type { Database } from "../db/database.js";
import type { SchedulerClusterRow } from "../db/rows.js";
import type { TenantAccess } from "../tenant-access.js";
import type { CommandHub, HostConnection } from "../commands/hub.js";

const RPC = "HostCommands.Connect";

type Call = ServerDuplexStream<CommandChannelRequest, Command>;
type Refusal = { code: status; details: string };

export class HostCommandsGrpcService {
  constructor(
    private readonly hub: CommandHub,
    private readonly db: Database,
    private readonly access: TenantAccess,
    private readonly authz: Authorizer,
    private readonly log: Logger,
  ) {}

  /** The connection a Hello opens, or why it may not. */
  private async identify(call: Call, hello: Hello): Promise<HostConnection | Refusal> {
    if (!hello.hostname) return { code: status.INVALID_ARGUMENT, details: "hello.hostname is required" };
    if (!isIP(hello.ip)) return { code: status.INVALID_ARGUMENT, details: `hello.ip "${hello.ip}" is not an IP address` };
    const hostId = makeHostId(hello.ip, hello.hostname, hello.seedPeer);
    if (hello.hostId && hello.hostId !== hostId) return { code: status.INVALID_ARGUMENT, details: `hello.host_id "${hello.hostId}" is not the id of ${hello.hostname} at ${hello.ip} ("${hostId}")` };
    let clusters: ReadonlyMap<number, number>;
    if (this.authz.enforce) {
      const denied = this.authz.check(call, RPC, ["peer", "seed-peer"]);
      if (denied) return denied;
      // check() let the call through: it carries an identity of a peer or seed peer.
      const id = Authorizer.callerOf(call) as Identity;
      if (id.name !== hello.hostname || (id.role === "seed-peer") !== hello.seedPeer) {
        return this.authz.refuse(call, RPC, `${RPC}: the certificate is for ${id.role} ${id.name}, the hello says ${hello.seedPeer ? "seed peer" : "peer"} ${hello.hostname}`);
      }
      const record = await this.access.recordOf(id);
      if (!record) return this.authz.refuse(call, RPC, `${RPC}: ${id.role} ${id.name} is not on record at this manager (no peers or seed_peers row, and no scheduler of its clusters lists it)`);
      clusters = record.schedulerClusters;
    } else {
      const [row] = hello.schedulerClusterId > 0 ? await this.db.query<Pick<SchedulerClusterRow, "tenant_id">>("SELECT tenant_id FROM scheduler_clusters WHERE id = $1", [hello.schedulerClusterId]) : [];
      clusters = row ? new Map([[hello.schedulerClusterId, row.tenant_id]]) : new Map();
    }
    return { hostId, hostname: hello.hostname, ip: hello.ip, seedPeer: hello.seedPeer, clusters, connectedAt: new Date(), send: (command) => call.write(command) };
  }

  connect(call: Call): void {
    let conn: HostConnection | undefined;
    let detach: (() => void) | undefined;
    let closed = false;
    const close = (err?: Refusal) => {
      if (closed) return;
      closed = true;
      detach?.();
      if (conn) this.log.info({ hostId: conn.hostId }, "command channel closed");
      if (err) call.emit("error", err);
      else call.end();
    };
    call.on("data", (req: CommandChannelRequest) => {
      const r = req.request;
      if (!conn) {
        if (r?.$case !== "hello") return close({ code: status.INVALID_ARGUMENT, details: "the first message of the command channel must be a hello" });
        if (detach !== undefined || closed) return;
        // A placeholder until the record is read: a second hello meanwhile is a protocol error.
        detach = () => undefined;
        this.identify(call, r.hello).then(
          (res) => {
            if (closed) return;
            if ("code" in res) return close(res);
            conn = res;
            detach = this.hub.attach(res);
            this.log.info({ hostId: res.hostId, clusters: [...res.clusters.keys()] }, "command channel open");
          },
          (e: unknown) => {
            this.log.error({ err: errorMessage(e) }, "command channel hello failed");
            close({ code: status.INTERNAL, details: errorMessage(e) });
          },
        );
        return;
      }
      if (r?.$case === "result") this.hub.answer(conn, r.result);
      else close({ code: status.INVALID_ARGUMENT, details: "only command results may follow the hello" });
    });
    call.on("end", () => close());
    call.on("error", () => close());
    call.on("cancelled", () => close());
  }

  handlers(): UntypedServiceImplementation {
    return { connect: this.connect.bind(this) };
  }
}
