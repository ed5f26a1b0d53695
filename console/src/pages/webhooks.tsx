// Webhooks: URLs subscribed to job events (created, succeeded, failed — a canceled job is a
// failed one), signed with a secret the manager never shows again. Each has a delivery log,
// where a delivery that gave up can be sent again. Reading is every role's; creating,
// deleting and redelivering are offered only to a role that may change webhooks (root).
import { useState } from "preact/hooks";
import { api, list } from "../api.js";
import { ErrorNote } from "../components/notes.js";
import { Pager } from "../components/pager.js";
import { StateBadge, StateCell } from "../components/state.js";
import { Listing, Table } from "../components/table.js";
import { ago, when } from "../format.js";
import { useAction, useLoad } from "../hooks.js";
import { mayWrite, useMe } from "../me.js";
import { Link } from "../router.js";
import { WEBHOOK_EVENTS, type Webhook, type WebhookDelivery } from "../types.js";

const PER_PAGE = 20;
const WATCH_MS = 1000;

export function Webhooks() {
  const writable = mayWrite(useMe(), "webhooks");
  const hooks = useLoad(() => list<Webhook>("/api/v1/webhooks", { per_page: 1000 }), []);
  const change = useAction();

  const remove = async (w: Webhook) => {
    if (!window.confirm(`Delete the webhook "${w.name}" and its delivery log?`)) return;
    if (await change.run(() => api<object>("DELETE", `/api/v1/webhooks/${w.id}`))) hooks.reload();
  };

  return (
    <>
      <h1>Webhooks</h1>
      <p class="hint">
        Job events are POSTed as JSON, signed: <code>X-Damselfly-Signature: sha256=HMAC-SHA256(secret, "&lt;X-Damselfly-Timestamp&gt;.&lt;body&gt;")</code>. A canceled job sends{" "}
        <code>job.failed</code>.
      </p>
      {writable && <CreateWebhook onCreated={hooks.reload} />}
      <section aria-labelledby="webhooks-title">
        <h2 id="webhooks-title">Subscriptions</h2>
        <ErrorNote error={change.error} />
        <Listing
          data={hooks.data}
          error={hooks.error}
          isEmpty={(d) => d.items.length === 0}
          empty="No webhook yet."
          render={(d) => (
            <Table id="webhooks" head={["Name", "URL", "Events", "State", "Created", ""]}>
              {d.items.map((w) => (
                <tr key={w.id} data-webhook={w.name}>
                  <td>
                    <Link href={`/webhooks/${w.id}`}>{w.name}</Link>
                    {w.bio && <div class="hint">{w.bio}</div>}
                  </td>
                  <td class="wrap">{w.url}</td>
                  <td>{w.event_types.join(", ")}</td>
                  <StateCell state={w.active ? "active" : "inactive"} />
                  <td>{ago(w.created_at)}</td>
                  {writable ? (
                    <td class="row-actions">
                      <button type="button" class="danger" onClick={() => void remove(w)} disabled={change.busy}>
                        Delete
                      </button>
                    </td>
                  ) : (
                    <td />
                  )}
                </tr>
              ))}
            </Table>
          )}
        />
      </section>
    </>
  );
}

function CreateWebhook({ onCreated }: { onCreated: () => void }) {
  const [name, setName] = useState("");
  const [url, setUrl] = useState("");
  const [secret, setSecret] = useState("");
  const [authHeader, setAuthHeader] = useState("");
  const [events, setEvents] = useState<Record<string, boolean>>({ "job.created": false, "job.succeeded": true, "job.failed": true });
  const action = useAction();

  const submit = async (e: Event) => {
    e.preventDefault();
    const chosen = WEBHOOK_EVENTS.filter((ev) => events[ev]);
    if (chosen.length === 0) return void action.run(() => Promise.reject(new Error("Choose at least one event.")));
    const body = { name, url, secret, event_types: chosen, ...(authHeader ? { auth_header: authHeader } : {}) };
    if (!(await action.run(() => api<Webhook>("POST", "/api/v1/webhooks", body)))) return;
    setName("");
    setUrl("");
    setSecret("");
    setAuthHeader("");
    onCreated();
  };

  return (
    <form class="card form-grid" onSubmit={(e) => void submit(e)} aria-labelledby="create-webhook-title">
      <h2 id="create-webhook-title">New webhook</h2>
      <label>
        Name
        <input name="webhook-name" required maxLength={256} value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        URL
        <input name="webhook-url" type="url" required maxLength={2048} placeholder="https://ci.example.com/hooks/damselfly" value={url} onInput={(e) => setUrl(e.currentTarget.value)} />
      </label>
      <label>
        Secret (shown never again)
        <input name="webhook-secret" type="password" autoComplete="new-password" required minLength={8} maxLength={256} value={secret} onInput={(e) => setSecret(e.currentTarget.value)} />
      </label>
      <label>
        Authorization header (optional)
        <input name="webhook-auth" type="password" autoComplete="off" maxLength={1024} value={authHeader} onInput={(e) => setAuthHeader(e.currentTarget.value)} />
      </label>
      <fieldset>
        <legend>Events</legend>
        {WEBHOOK_EVENTS.map((ev) => (
          <label key={ev} class="inline">
            <input type="checkbox" name={`event-${ev}`} checked={events[ev] === true} onChange={(e) => setEvents({ ...events, [ev]: e.currentTarget.checked })} /> {ev}
          </label>
        ))}
      </fieldset>
      <ErrorNote error={action.error} />
      <div class="actions wide">
        <button type="submit" class="primary" disabled={action.busy}>
          Create webhook
        </button>
      </div>
    </form>
  );
}

/** One webhook and its delivery log, newest first, filtered by state; a FAILURE delivery can be sent again. */
export function WebhookDetail({ id }: { id: number }) {
  const writable = mayWrite(useMe(), "webhooks");
  const [page, setPage] = useState(1);
  const [state, setState] = useState("");
  const hook = useLoad(() => api<Webhook>("GET", `/api/v1/webhooks/${id}`), [id]);
  // Followed while a delivery is still being attempted.
  const deliveries = useLoad(
    () => list<WebhookDelivery>(`/api/v1/webhooks/${id}/deliveries`, { page, per_page: PER_PAGE, state }),
    [id, page, state],
    (d) => (d.items.some((x) => x.state === "PENDING") ? WATCH_MS : undefined),
  );
  const action = useAction();
  const w = hook.data;

  const redeliver = async (d: WebhookDelivery) => {
    if (await action.run(() => api<WebhookDelivery>("POST", `/api/v1/webhooks/${id}/deliveries/${d.id}/redeliver`))) deliveries.reload();
  };

  return (
    <>
      <p class="crumbs">
        <Link href="/webhooks">Webhooks</Link> / {w?.name ?? `#${id}`}
      </p>
      <ErrorNote error={hook.error} />
      {w && (
        <>
          <h1>
            Webhook {w.name} <StateBadge state={w.active ? "active" : "inactive"} />
          </h1>
          <dl class="facts" id="webhook-facts">
            <dt>URL</dt>
            <dd>{w.url}</dd>
            <dt>Events</dt>
            <dd>{w.event_types.join(", ")}</dd>
            <dt>Authorization header</dt>
            <dd>{w.has_auth_header ? "set (write-only)" : "none"}</dd>
            <dt>Certificate check</dt>
            <dd>{w.skip_cert_verify ? "skipped" : "on"}</dd>
          </dl>
        </>
      )}
      <section aria-labelledby="deliveries-title">
        <div class="section-head">
          <h2 id="deliveries-title">Deliveries</h2>
          <label class="inline">
            State{" "}
            <select
              name="delivery-state"
              value={state}
              onChange={(e) => {
                setPage(1);
                setState(e.currentTarget.value);
              }}
            >
              {["", "PENDING", "SUCCESS", "FAILURE"].map((s) => (
                <option key={s} value={s}>
                  {s || "any"}
                </option>
              ))}
            </select>
          </label>
        </div>
        <ErrorNote error={action.error} />
        <Listing
          data={deliveries.data}
          error={deliveries.error}
          isEmpty={(d) => d.items.length === 0}
          empty="No delivery."
          render={(d) => (
            <Table id="deliveries" head={["Event", "State", "Attempts", "Status", "Error", "Delivered", "Next attempt", ""]}>
              {d.items.map((x) => (
                <tr key={x.id} data-delivery={x.id} data-event={x.event}>
                  <td title={x.delivery_id}>{x.event}</td>
                  <StateCell state={x.state} />
                  <td data-attempts={x.attempts}>{x.attempts}</td>
                  <td>{x.status_code ?? "no answer"}</td>
                  <td class="wrap">{x.error}</td>
                  <td title={x.delivered_at ? when(x.delivered_at) : undefined}>{x.delivered_at ? ago(x.delivered_at) : ""}</td>
                  <td>{x.state === "PENDING" && x.next_attempt_at ? when(x.next_attempt_at) : ""}</td>
                  {writable && x.state === "FAILURE" ? (
                    <td class="row-actions">
                      <button type="button" onClick={() => void redeliver(x)} disabled={action.busy}>
                        Redeliver
                      </button>
                    </td>
                  ) : (
                    <td />
                  )}
                </tr>
              ))}
            </Table>
          )}
        />
        {deliveries.data && <Pager page={page} perPage={PER_PAGE} total={deliveries.data.total} onPage={setPage} />}
      </section>
    </>
  );
}
