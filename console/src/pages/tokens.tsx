// Personal access tokens for the open API (/oapi/v1, e.g. Harbor's preheat provider). The
// secret is in the answer to its creation only — the manager keeps its SHA-256 — so it is
// shown once here, with a copy button, and never again.
import { useState } from "preact/hooks";
import { api, list } from "../api.js";
import { ErrorNote } from "../components/notes.js";
import { StateCell } from "../components/state.js";
import { Listing, Table } from "../components/table.js";
import { ago, when } from "../format.js";
import { useAction, useLoad } from "../hooks.js";
import { useMe } from "../me.js";
import type { PersonalAccessToken } from "../types.js";

const LIFETIMES = [7, 30, 90, 365] as const;
const DAY_MS = 86_400_000;

export function Tokens() {
  const me = useMe();
  const tokens = useLoad(() => list<PersonalAccessToken>("/api/v1/personal-access-tokens", { user_id: me.user.id, per_page: 1000 }), [me.user.id]);
  const [shown, setShown] = useState<PersonalAccessToken | undefined>(undefined);
  const change = useAction();

  const setState = async (t: PersonalAccessToken, state: "active" | "inactive") => {
    if (await change.run(() => api<PersonalAccessToken>("PATCH", `/api/v1/personal-access-tokens/${t.id}`, { state }))) tokens.reload();
  };
  const remove = async (t: PersonalAccessToken) => {
    if (!window.confirm(`Delete the token "${t.name}"? Whatever uses it stops working.`)) return;
    if (await change.run(() => api<object>("DELETE", `/api/v1/personal-access-tokens/${t.id}`))) tokens.reload();
  };

  return (
    <>
      <h1>Personal access tokens</h1>
      <p class="hint">
        A token calls the open API (<code>/oapi/v1/jobs</code>, <code>/oapi/v1/clusters</code>) as you, within its scopes: <code>Authorization: Bearer &lt;token&gt;</code>.
      </p>
      <CreateToken
        onCreated={(t) => {
          setShown(t);
          tokens.reload();
        }}
      />
      {shown?.token && (
        <section class="card secret" aria-labelledby="new-token-title" id="new-token">
          <h2 id="new-token-title">Token “{shown.name}” created</h2>
          <p>Copy it now: the manager keeps only its hash, so it is not shown again.</p>
          <div class="secret-row">
            <code id="new-token-value">{shown.token}</code>
            <button type="button" onClick={() => void navigator.clipboard?.writeText(shown.token ?? "")}>
              Copy
            </button>
            <button type="button" onClick={() => setShown(undefined)}>
              Done
            </button>
          </div>
        </section>
      )}
      <section aria-labelledby="tokens-title">
        <h2 id="tokens-title">Your tokens</h2>
        <ErrorNote error={change.error} />
        <Listing
          data={tokens.data}
          error={tokens.error}
          isEmpty={(d) => d.items.length === 0}
          empty="No token yet."
          render={(d) => (
            <Table id="tokens" head={["Name", "Scopes", "State", "Expires", "Last used", ""]}>
              {d.items.map((t) => (
                <tr key={t.id} data-token={t.name}>
                  <td>
                    {t.name}
                    {t.bio && <div class="hint">{t.bio}</div>}
                  </td>
                  <td>{t.scopes.join(", ")}</td>
                  <StateCell state={Date.parse(t.expired_at) <= Date.now() ? "expired" : t.state} />
                  <td>{when(t.expired_at)}</td>
                  <td>{ago(t.last_used_at)}</td>
                  <td class="row-actions">
                    {t.state === "active" ? (
                      <button type="button" onClick={() => void setState(t, "inactive")} disabled={change.busy}>
                        Revoke
                      </button>
                    ) : (
                      <button type="button" onClick={() => void setState(t, "active")} disabled={change.busy}>
                        Reactivate
                      </button>
                    )}
                    <button type="button" class="danger" onClick={() => void remove(t)} disabled={change.busy}>
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </Table>
          )}
        />
      </section>
    </>
  );
}

function CreateToken({ onCreated }: { onCreated: (t: PersonalAccessToken) => void }) {
  const [name, setName] = useState("");
  const [bio, setBio] = useState("");
  const [scopes, setScopes] = useState<Record<"job" | "cluster", boolean>>({ job: true, cluster: false });
  const [days, setDays] = useState<number>(30);
  const action = useAction();

  const submit = async (e: Event) => {
    e.preventDefault();
    const chosen = (Object.keys(scopes) as Array<"job" | "cluster">).filter((s) => scopes[s]);
    if (chosen.length === 0) return void action.run(() => Promise.reject(new Error("Choose at least one scope.")));
    const t = await action.run(() =>
      api<PersonalAccessToken>("POST", "/api/v1/personal-access-tokens", { name, ...(bio ? { bio } : {}), scopes: chosen, expired_at: new Date(Date.now() + days * DAY_MS).toISOString() }),
    );
    if (!t) return;
    setName("");
    setBio("");
    onCreated(t);
  };

  return (
    <form class="card form-grid" onSubmit={(e) => void submit(e)} aria-labelledby="create-token-title">
      <h2 id="create-token-title">New token</h2>
      <label>
        Name
        <input name="token-name" required maxLength={256} value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        Expires in
        <select name="lifetime" value={String(days)} onChange={(e) => setDays(Number(e.currentTarget.value))}>
          {LIFETIMES.map((d) => (
            <option key={d} value={String(d)}>
              {d} days
            </option>
          ))}
        </select>
      </label>
      <fieldset>
        <legend>Scopes</legend>
        {(["job", "cluster"] as const).map((s) => (
          <label key={s} class="inline">
            <input type="checkbox" name={`scope-${s}`} checked={scopes[s]} onChange={(e) => setScopes({ ...scopes, [s]: e.currentTarget.checked })} /> {s === "job" ? "jobs (preheat)" : "clusters"}
          </label>
        ))}
      </fieldset>
      <label class="wide">
        Description (optional)
        <input name="token-bio" maxLength={1024} value={bio} onInput={(e) => setBio(e.currentTarget.value)} />
      </label>
      <ErrorNote error={action.error} />
      <div class="actions wide">
        <button type="submit" class="primary" disabled={action.busy}>
          Create token
        </button>
      </div>
    </form>
  );
}
