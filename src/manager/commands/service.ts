// Commands to daemons (issue 25): stored in host_commands with one host_command_results row per
// target host, sent over the command channel (hub.ts), and finished as the hosts answer. A
// target that is not connected to this manager gets a FAILURE result saying so at once; a
// cluster with no daemon connected fails the command with that reason. Results that stay
// PENDING past the command's deadline (the manager that sent it stopped before its timer
// fired) are failed when the command is read, so nothing is pending forever.
import type { Static } from "@sinclair/typebox";
import type { Logger } from "../../common/logger.js";
import { errorMessage } from "../../common/errors.js";
import type { Command, CommandResult } from "../../gen/damselfly/manager/v1/commands.js";
import { assertTenant, type Principal } from "../auth/principal.js";
import type { Database, Queryable } from "../db/database.js";
import type { HostCommandResultRow, HostCommandRow, SchedulerClusterRow } from "../db/rows.js";
import { badRequest, notFound } from "../errors.js";
import type { CommandHub, HostConnection, Outcome } from "./hub.js";
import type * as C from "./schemas.js";

type CommandView = Static<typeof C.HostCommand>;
type Output = Static<typeof C.CommandOutput>;

/** Past its deadline a PENDING result is failed on reading; the grace covers the sender's own timer. */
const DEADLINE_GRACE_MS = 5000;

/** The wire message of a stored command. */
export function commandMessage(row: Pick<HostCommandRow, "id" | "type" | "args">): Command {
  const id = String(row.id);
  switch (row.type) {
    case "gc":
      return { id, command: { $case: "gc", gc: {} } };
    case "delete_task":
      return { id, command: { $case: "deleteTask", deleteTask: { taskId: row.args.task_id ?? "" } } };
    case "set_log_level":
      return { id, command: { $case: "setLogLevel", setLogLevel: { level: row.args.level ?? "" } } };
    case "refresh_config":
      return { id, command: { $case: "refreshConfig", refreshConfig: {} } };
  }
}

/** The fields of a host's result that its command's type reports. */
function outputOf(type: C.CommandType, r: CommandResult): Output {
  switch (type) {
    case "gc":
    case "delete_task":
      return { tasks_removed: r.tasksRemoved, bytes_freed: r.bytesFreed };
    case "set_log_level":
      return { previous_log_level: r.previousLogLevel };
    case "refresh_config":
      return { schedulers: r.schedulers, schedulers_changed: r.schedulersChanged };
  }
}

const notConnected = (hostId: string) => `host ${hostId} is not connected to this manager's command channel (unknown host, daemon down, or no manager.addr in its config)`;

export class CommandService {
  constructor(
    private readonly db: Database,
    private readonly hub: CommandHub,
    private readonly log: Logger,
  ) {}

  /** Connected hosts a principal may command: root all, others those in their tenant's clusters. */
  visibleHosts(p: Principal): HostConnection[] {
    return this.hub.connected().filter((c) => p.isRoot || [...c.clusters.values()].includes(p.tenantId));
  }

  async create(p: Principal, body: Static<typeof C.CreateCommand>): Promise<CommandView> {
    const args = body.args ?? {};
    if (body.type === "delete_task" && !args.task_id) throw badRequest("body.args.task_id", "is required for delete_task");
    if (body.type === "set_log_level" && !args.level) throw badRequest("body.args.level", "is required for set_log_level");
    if ((body.host_id === undefined) === (body.scheduler_cluster_id === undefined)) throw badRequest("body.host_id", "give exactly one of host_id and scheduler_cluster_id");
    let tenantId = p.tenantId;
    let targets: HostConnection[];
    if (body.scheduler_cluster_id !== undefined) {
      const [cluster] = await this.db.query<Pick<SchedulerClusterRow, "tenant_id">>("SELECT tenant_id FROM scheduler_clusters WHERE id = $1", [body.scheduler_cluster_id]);
      if (!cluster) throw notFound("scheduler cluster");
      assertTenant(p, cluster.tenant_id);
      tenantId = cluster.tenant_id;
      targets = this.hub.ofCluster(body.scheduler_cluster_id);
    } else {
      // Another tenant's host is answered as an unknown one: no probing for hosts.
      targets = this.visibleHosts(p).filter((c) => c.hostId === body.host_id);
    }
    const timeoutMs = (body.timeout ?? 30) * 1000;
    const error = body.scheduler_cluster_id !== undefined && targets.length === 0 ? `no daemon of scheduler cluster ${body.scheduler_cluster_id} is connected to this manager's command channel` : "";
    const row = await this.db.transaction(async (tx) => {
      const [cmd] = await tx.query<HostCommandRow>(
        "INSERT INTO host_commands (tenant_id, user_id, type, args, host_id, scheduler_cluster_id, timeout_ms, state, error) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9) RETURNING *",
        [tenantId, p.userId, body.type, JSON.stringify(args), body.host_id ?? null, body.scheduler_cluster_id ?? null, timeoutMs, error ? "FAILURE" : "PENDING", error],
      );
      if (!cmd) throw new Error("host command insert returned nothing");
      for (const t of targets) await tx.query("INSERT INTO host_command_results (command_id, host_id, hostname) VALUES ($1, $2, $3)", [cmd.id, t.hostId, t.hostname]);
      if (body.host_id !== undefined && targets.length === 0) {
        await tx.query("INSERT INTO host_command_results (command_id, host_id, state, error, finished_at) VALUES ($1, $2, 'FAILURE', $3, now())", [cmd.id, body.host_id, notConnected(body.host_id)]);
        await settle(tx, cmd.id);
      }
      return cmd;
    });
    this.log.info({ commandId: row.id, type: row.type, hostId: row.host_id, schedulerClusterId: row.scheduler_cluster_id, hosts: targets.map((t) => t.hostId), user: p.userName }, "command sent");
    const message = commandMessage(row);
    for (const t of targets) {
      void this.hub
        .dispatch(t, message, timeoutMs)
        .then((o) => this.record(row, t.hostId, o))
        .catch((e: unknown) => this.log.error({ commandId: row.id, hostId: t.hostId, err: errorMessage(e) }, "recording a command result failed"));
    }
    return this.load(p, row.id);
  }

  private async record(cmd: HostCommandRow, hostId: string, o: Outcome): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.query("UPDATE host_command_results SET state = $3, error = $4, result = $5::jsonb, finished_at = now(), updated_at = now() WHERE command_id = $1 AND host_id = $2 AND state = 'PENDING'", [
        cmd.id,
        hostId,
        o.ok ? "SUCCESS" : "FAILURE",
        o.ok ? "" : o.error.slice(0, 1024),
        JSON.stringify(o.ok ? outputOf(cmd.type, o.result) : {}),
      ]);
      await settle(tx, cmd.id);
    });
    if (!o.ok) this.log.warn({ commandId: cmd.id, type: cmd.type, hostId, err: o.error }, "command failed on a host");
  }

  async load(p: Principal, id: number): Promise<CommandView> {
    const [row] = await this.db.query<HostCommandRow>("SELECT * FROM host_commands WHERE id = $1", [id]);
    if (!row) throw notFound("command");
    assertTenant(p, row.tenant_id);
    return (await this.decorate([row]))[0] as CommandView;
  }

  /** Commands with their per-host results, overdue results failed first. */
  async decorate(rows: HostCommandRow[]): Promise<CommandView[]> {
    const ids = rows.map((r) => r.id);
    const overdue = rows.filter((r) => r.state === "PENDING" && Date.now() - r.created_at.getTime() > r.timeout_ms + DEADLINE_GRACE_MS).map((r) => r.id);
    if (overdue.length > 0) {
      await this.db.transaction(async (tx) => {
        await tx.query("UPDATE host_command_results SET state = 'FAILURE', error = 'no answer before the deadline (the manager that sent it stopped before the host answered)', finished_at = now(), updated_at = now() WHERE command_id = ANY($1::int[]) AND state = 'PENDING'", [overdue]);
        for (const id of overdue) await settle(tx, id);
      });
    }
    const fresh = overdue.length > 0 ? await this.db.query<HostCommandRow>("SELECT * FROM host_commands WHERE id = ANY($1::int[])", [ids]) : rows;
    const byId = new Map(fresh.map((r) => [r.id, r]));
    const results = await this.db.query<HostCommandResultRow>("SELECT * FROM host_command_results WHERE command_id = ANY($1::int[]) ORDER BY host_id", [ids]);
    return ids.map((id) => {
      const r = byId.get(id) as HostCommandRow;
      return {
        id: r.id,
        tenant_id: r.tenant_id,
        user_id: r.user_id,
        type: r.type,
        args: r.args,
        host_id: r.host_id,
        scheduler_cluster_id: r.scheduler_cluster_id,
        timeout: r.timeout_ms / 1000,
        state: r.state,
        error: r.error,
        results: results.filter((x) => x.command_id === id).map((x) => ({ host_id: x.host_id, hostname: x.hostname, state: x.state, error: x.error, result: x.result, finished_at: x.finished_at })),
        created_at: r.created_at,
        updated_at: r.updated_at,
      };
    });
  }
}

/** A command's state from its results: PENDING while one is, FAILURE when one failed, else SUCCESS. */
async function settle(q: Queryable, commandId: number): Promise<void> {
  await q.query(
    `UPDATE host_commands SET updated_at = now(), state = CASE
       WHEN error <> '' THEN 'FAILURE'
       WHEN EXISTS (SELECT 1 FROM host_command_results WHERE command_id = $1 AND state = 'PENDING') THEN 'PENDING'
       WHEN EXISTS (SELECT 1 FROM host_command_results WHERE command_id = $1 AND state = 'FAILURE') THEN 'FAILURE'
       ELSE 'SUCCESS' END
     WHERE id = $1`,
    [commandId],
  );
}
