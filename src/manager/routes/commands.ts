// Commands to daemons over the command channel (issue 25) under /api/v1/commands: send one to a
// host or to every connected daemon of a scheduler cluster, read it with its per-host results,
// list them, and see which daemons are connected. RBAC object `commands`: sending needs its
// write permission (root, or a role an operator was given with commands:*), reading its read
// permission; non-root users see and target only their tenant's clusters. Sending is recorded
// in the audit log like every state-changing request (routes/audits.ts).
import { Type } from "@sinclair/typebox";
import { guard, principalOf } from "../auth/principal.js";
import * as C from "../commands/schemas.js";
import type { CommandService } from "../commands/service.js";
import * as S from "../schemas.js";
import { JWT_SECURITY, type ManagerApp, type RouteContext } from "./context.js";
import { listPage } from "./crud.js";

export function registerCommands(app: ManagerApp, ctx: RouteContext, commands: CommandService): void {
  const pre = guard(ctx.auth, "jwt", { object: "commands" });
  const common = { tags: ["commands"], security: JWT_SECURITY };
  const errors = { 400: S.Message, 401: S.Message, 403: S.Message, 404: S.Message };
  const path = "/api/v1/commands";

  app.post(
    path,
    {
      preValidation: pre,
      schema: { ...common, summary: "send a command (gc, delete_task, set_log_level, refresh_config) to a host or to every connected daemon of a scheduler cluster", body: C.CreateCommand, response: { 200: C.HostCommand, ...errors } },
    },
    async (request) => commands.create(principalOf(request), request.body),
  );

  app.get(
    path,
    { preValidation: pre, schema: { ...common, summary: "list commands, newest first", querystring: C.ListCommandsQuery, response: { 200: Type.Array(C.HostCommand), ...errors } } },
    async (request, reply) => commands.decorate(await listPage(ctx.db, request, reply, principalOf(request), "host_commands", ["type", "state"], "id DESC")),
  );

  app.get(
    `${path}/hosts`,
    { preValidation: pre, schema: { ...common, summary: "daemons connected to this manager's command channel", response: { 200: Type.Array(C.ConnectedHost), ...errors } } },
    (request) =>
      commands.visibleHosts(principalOf(request)).map((c) => ({ host_id: c.hostId, hostname: c.hostname, ip: c.ip, seed_peer: c.seedPeer, scheduler_cluster_ids: [...c.clusters.keys()], connected_at: c.connectedAt })),
  );

  app.get(`${path}/:id`, { preValidation: pre, schema: { ...common, summary: "a command and its per-host results", params: S.IdParams, response: { 200: C.HostCommand, ...errors } } }, async (request) =>
    commands.load(principalOf(request), request.params.id),
  );
}
