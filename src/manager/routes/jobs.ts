// Jobs under /api/v1/jobs (JWT) and /oapi/v1/jobs (personal access token, scope `job`) — the
// path Harbor's Dragonfly preheat provider uses.
import { Type } from "@sinclair/typebox";
import { assertTenant, guard, principalOf } from "../auth/principal.js";
import * as S from "../schemas.js";
import { JWT_SECURITY, PAT_SECURITY, type ManagerApp, type RouteContext } from "./context.js";
import { listPage } from "./crud.js";

export function registerJobs(app: ManagerApp, ctx: RouteContext, prefix: "/api/v1" | "/oapi/v1"): void {
  const open = prefix === "/oapi/v1";
  const pre = guard(ctx.auth, open ? "pat" : "jwt", { object: "jobs", scope: "job" });
  const common = { tags: [open ? "open api" : "jobs"], security: open ? PAT_SECURITY : JWT_SECURITY };
  const errors = { 400: S.Message, 401: S.Message, 403: S.Message, 404: S.Message };
  const path = `${prefix}/jobs`;

  const loadOwned = async (id: number, request: Parameters<typeof principalOf>[0]) => {
    const job = await ctx.jobs.load(ctx.db, id);
    assertTenant(principalOf(request), job.tenant_id);
    return job;
  };

  app.post(
    path,
    { preValidation: pre, schema: { ...common, summary: "create a job (preheat, get_task, delete_task, sync_peers)", body: S.CreateJob, response: { 200: S.Job, ...errors, 429: S.Message } } },
    async (request) => ctx.jobs.create(principalOf(request), request.body),
  );

  app.get(
    path,
    {
      preValidation: pre,
      schema: {
        ...common,
        summary: "list jobs",
        querystring: Type.Object({
          ...S.Page,
          type: Type.Optional(Type.String()),
          state: Type.Optional(Type.Union(["PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE"].map((s) => Type.Literal(s)))),
          user_id: Type.Optional(Type.Integer()),
        }),
        response: { 200: Type.Array(S.Job), ...errors },
      },
    },
    async (request, reply) => {
      const p = principalOf(request);
      const rows = await listPage(ctx.db, request, reply, p, "jobs", ["type", "state", "user_id"], "id DESC");
      return ctx.jobs.decorate(ctx.db, rows);
    },
  );

  app.get(`${path}/:id`, { preValidation: pre, schema: { ...common, summary: "get a job and its per-cluster results", params: S.IdParams, response: { 200: S.Job, ...errors } } }, async (request) =>
    loadOwned(request.params.id, request),
  );

  app.patch(
    `${path}/:id`,
    { preValidation: pre, schema: { ...common, summary: "update a job's description", params: S.IdParams, body: S.UpdateJob, response: { 200: S.Job, ...errors } } },
    async (request) => {
      const id = request.params.id;
      await loadOwned(id, request);
      const body = request.body;
      if (body.bio !== undefined) await ctx.db.query("UPDATE jobs SET bio = $1, updated_at = now() WHERE id = $2", [body.bio, id]);
      return ctx.jobs.load(ctx.db, id);
    },
  );

  // Actions on a job are POSTs: the RBAC action is the one creating a job needs, so whoever may
  // preheat may cancel and retry (a guest may not), within their tenant.
  app.post(
    `${path}/:id/cancel`,
    {
      preValidation: pre,
      schema: {
        ...common,
        summary: "cancel a PENDING job (waiting or running)",
        description:
          "The job ends FAILURE (Dragonfly has no canceled state; FAILURE is the terminal state Harbor and Dragonfly's clients know), with `result.canceled` true and a job state per cluster saying who canceled it. Its runner starts no further work for it, and job.failed webhooks fire. A job that already ended: 409.",
        params: S.IdParams,
        response: { 200: S.Job, ...errors, 409: S.Message },
      },
    },
    async (request) => ctx.jobs.cancel(principalOf(request), request.params.id),
  );

  app.post(
    `${path}/:id/retry`,
    {
      preValidation: pre,
      schema: {
        ...common,
        summary: "retry a FAILURE job (canceled ones included) as a new job",
        description:
          "Creates a new job with the old one's type, args, description and scheduler clusters; its `retry_of` names the old job, which stays as it ended. Rate limited as any new job (429). A job that has not failed: 409; one whose credentials were dropped when it ended (registry password, object storage, HDFS or hub tokens): 409, create it again with them.",
        params: S.IdParams,
        response: { 200: S.Job, ...errors, 409: S.Message, 429: S.Message },
      },
    },
    async (request) => ctx.jobs.retry(principalOf(request), request.params.id),
  );

  app.delete(`${path}/:id`, { preValidation: pre, schema: { ...common, summary: "delete a job", params: S.IdParams, response: { 200: Type.Object({}), ...errors } } }, async (request) => {
    const id = request.params.id;
    await loadOwned(id, request);
    await ctx.db.query("DELETE FROM jobs WHERE id = $1", [id]);
    return {};
  });
}
