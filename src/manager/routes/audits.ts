// Audit log: every state-changing /api/v1 and /oapi/v1 request (who, what, path, outcome), and
// the read API over it. Request bodies are never recorded, so credentials cannot leak here.
import { Type } from "@sinclair/typebox";
import { guard, principalOf } from "../auth/principal.js";
import * as S from "../schemas.js";
import { JWT_SECURITY, type ManagerApp, type RouteContext } from "./context.js";
import { listPage, withBase } from "./crud.js";

export function registerAudits(app: ManagerApp, ctx: RouteContext): void {
  app.addHook("onResponse", async (request, reply) => {
    const url = request.routeOptions.url ?? "";
    if (request.method === "GET" || request.method === "HEAD" || request.method === "OPTIONS") return;
    if (!url.startsWith("/api/v1/") && !url.startsWith("/oapi/v1/")) return;
    const p = request.principal;
    const actorType = p ? (p.kind === "pat" ? "PAT" : "USER") : "UNKNOWN";
    try {
      await ctx.db.query(
        "INSERT INTO audits (tenant_id, actor_type, actor_name, event_type, operation, state, path, status_code) VALUES ($1, $2, $3, 'API', $4, $5, $6, $7)",
        [p?.tenantId ?? null, actorType, p?.userName ?? "", request.method, reply.statusCode < 400 ? "SUCCESS" : "FAILURE", (request.url.split("?")[0] ?? "").slice(0, 1024), reply.statusCode],
      );
    } catch (err) {
      ctx.logger.warn({ err }, "audit record failed");
    }
  });

  app.get(
    "/api/v1/audits",
    {
      preValidation: guard(ctx.auth, "jwt", { object: "audits" }),
      schema: {
        tags: ["audits"],
        security: JWT_SECURITY,
        summary: "list audit records",
        querystring: Type.Object({
          ...S.Page,
          actor_type: Type.Optional(Type.Union([Type.Literal("UNKNOWN"), Type.Literal("USER"), Type.Literal("PAT")])),
          actor_name: Type.Optional(Type.String()),
          event_type: Type.Optional(Type.Literal("API")),
          operation: Type.Optional(Type.String()),
          state: Type.Optional(Type.Union([Type.Literal("SUCCESS"), Type.Literal("FAILURE")])),
          path: Type.Optional(Type.String()),
          status_code: Type.Optional(Type.Integer()),
        }),
        response: { 200: Type.Array(S.Audit), 400: S.Message, 401: S.Message, 403: S.Message },
      },
    },
    async (request, reply) => {
      const p = principalOf(request);
      const rows = await listPage(ctx.db, request, reply, p, "audits", ["actor_type", "actor_name", "event_type", "operation", "state", "path", "status_code"], "id DESC");
      return rows.map(withBase);
    },
  );
}
