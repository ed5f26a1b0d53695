// Webhooks under /api/v1/webhooks: subscriptions of a URL to job events (create, list, get,
// update, delete through the generic CRUD handlers: RBAC object `webhooks`, so guests read and
// only roles that may write `webhooks` — root — change them; tenancy as every other object),
// their delivery log, and redelivery of a failed delivery. The secret and the auth header are
// write-only: the response schema does not list them, and they are dropped before serialising.
import { Type } from "@sinclair/typebox";
import type { SsrfPolicy } from "../../common/ssrf.js";
import type { WebhookDeliveryRow, WebhookRow } from "../db/rows.js";
import { guard, principalOf } from "../auth/principal.js";
import { conflict, notFound } from "../errors.js";
import * as S from "../schemas.js";
import { checkWebhookUrl } from "../webhooks/url.js";
import { JWT_SECURITY, type ManagerApp, type RouteContext } from "./context.js";
import { loadScoped, paginate, registerCrud, withBase, type CrudSpec } from "./crud.js";

/** What the API shows of a delivery: everything but the body and the lease. */
type DeliveryView = Omit<WebhookDeliveryRow, "body" | "lease_owner" | "lease_until">;
const DELIVERY_COLUMNS = "id, webhook_id, delivery_id, event, state, attempts, status_code, error, next_attempt_at, delivered_at, created_at, updated_at";

/** A webhook as the API shows it: the secret and the auth header never leave the database. */
function presentWebhooks(rows: WebhookRow[]) {
  return Promise.resolve(rows.map(({ secret: _secret, auth_header: authHeader, ...row }) => ({ ...withBase(row), has_auth_header: authHeader !== "" })));
}

export interface WebhookRouteDeps {
  /** Where webhook URLs may point (the dispatcher's policy). */
  ssrf: SsrfPolicy;
  /** Wakes this manager's dispatcher after a redelivery was queued. */
  onQueued: () => void;
}

export function registerWebhooks(app: ManagerApp, ctx: RouteContext, deps: WebhookRouteDeps): void {
  const spec: CrudSpec<"webhooks", typeof S.Webhook> = {
    path: "/api/v1/webhooks",
    object: "webhooks",
    table: "webhooks",
    what: "webhook",
    tag: "webhooks",
    columns: { name: "text", bio: "text", url: "text", event_types: "json", secret: "text", auth_header: "text", skip_cert_verify: "bool", active: "bool", user_id: "int" },
    tenant: { kind: "direct" },
    filters: { active: "bool", name: "text" },
    create: S.CreateWebhook,
    update: S.UpdateWebhook,
    response: S.Webhook,
    prepare: async (values, p, _q, isCreate) => {
      if (isCreate) values.user_id = p.userId;
      else delete values.user_id;
      if (typeof values.url === "string") await checkWebhookUrl(deps.ssrf, values.url);
    },
    present: presentWebhooks,
  };
  registerCrud(app, ctx, spec);

  const pre = guard(ctx.auth, "jwt", { object: spec.object });
  const common = { tags: [spec.tag], security: JWT_SECURITY };
  const errors = { 400: S.Message, 401: S.Message, 403: S.Message, 404: S.Message };
  const ListQuery = Type.Object({ ...S.Page, state: Type.Optional(S.WebhookDeliveryState), event: Type.Optional(S.WebhookEventType) });

  const loadDelivery = async (webhookId: number, id: number) => {
    const [row] = await ctx.db.query<DeliveryView>(`SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND webhook_id = $2`, [id, webhookId]);
    if (!row) throw notFound("webhook delivery");
    return row;
  };

  app.get(
    `${spec.path}/:id/deliveries`,
    { preValidation: pre, schema: { ...common, summary: "list a webhook's deliveries, newest first", params: S.IdParams, querystring: ListQuery, response: { 200: Type.Array(S.WebhookDelivery), ...errors } } },
    async (request, reply) => {
      const webhook = await loadScoped(ctx, spec, request.params.id, principalOf(request));
      const { page = 1, per_page: perPage = 10, state, event } = request.query;
      const where = ["webhook_id = $1"];
      const params: unknown[] = [webhook.id];
      for (const [column, value] of [["state", state], ["event", event]] as const) {
        if (value === undefined) continue;
        params.push(value);
        where.push(`${column} = $${params.length}`);
      }
      const cond = where.join(" AND ");
      const [count] = await ctx.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE ${cond}`, params);
      const rows = await ctx.db.query<DeliveryView>(`SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE ${cond} ORDER BY id DESC LIMIT ${perPage} OFFSET ${(page - 1) * perPage}`, params);
      paginate(reply, request, count?.n ?? 0, page, perPage);
      return rows;
    },
  );

  app.get(
    `${spec.path}/:id/deliveries/:delivery`,
    { preValidation: pre, schema: { ...common, summary: "get one delivery of a webhook", params: S.WebhookDeliveryParams, response: { 200: S.WebhookDelivery, ...errors } } },
    async (request) => {
      await loadScoped(ctx, spec, request.params.id, principalOf(request));
      return loadDelivery(request.params.id, request.params.delivery);
    },
  );

  app.post(
    `${spec.path}/:id/deliveries/:delivery/redeliver`,
    {
      preValidation: pre,
      schema: {
        ...common,
        summary: "send a FAILURE delivery again, with the same delivery id and body and a fresh set of attempts (a delivered one is never sent twice: 409)",
        params: S.WebhookDeliveryParams,
        response: { 200: S.WebhookDelivery, ...errors, 409: S.Message },
      },
    },
    async (request) => {
      await loadScoped(ctx, spec, request.params.id, principalOf(request));
      const current = await loadDelivery(request.params.id, request.params.delivery);
      const [row] = await ctx.db.query<DeliveryView>(
        `UPDATE webhook_deliveries SET state = 'PENDING', attempts = 0, status_code = NULL, error = '', next_attempt_at = now(), lease_owner = NULL, lease_until = NULL, updated_at = now()
         WHERE id = $1 AND state = 'FAILURE' RETURNING ${DELIVERY_COLUMNS}`,
        [current.id],
      );
      if (!row) throw conflict(`webhook delivery ${current.id} is ${current.state}: only a FAILURE delivery can be redelivered`);
      deps.onQueued();
      return row;
    },
  );
}
