// The audit log: every state-changing API call (who, what, where, outcome), newest first.
import { useState } from "preact/hooks";
import { list } from "../api.js";
import { Empty, ErrorNote, Loading } from "../components/notes.js";
import { Pager } from "../components/pager.js";
import { StateBadge } from "../components/state.js";
import { when } from "../format.js";
import { useLoad } from "../hooks.js";
import type { Audit } from "../types.js";

const PER_PAGE = 25;

export function Audits() {
  const [page, setPage] = useState(1);
  const [actor, setActor] = useState("");
  const [state, setState] = useState("");
  const [operation, setOperation] = useState("");
  const audits = useLoad(() => list<Audit>("/api/v1/audits", { page, per_page: PER_PAGE, actor_name: actor.trim(), state, operation }), [page, actor, state, operation]);
  const filter = (set: (v: string) => void) => (e: Event) => {
    set((e.currentTarget as HTMLInputElement | HTMLSelectElement).value);
    setPage(1);
  };

  return (
    <>
      <h1>Audit log</h1>
      <div class="filters card">
        <label>
          Actor <input name="actor" value={actor} onChange={filter(setActor)} placeholder="user name" />
        </label>
        <label>
          Method{" "}
          <select name="operation" value={operation} onChange={filter(setOperation)}>
            <option value="">any</option>
            {["POST", "PATCH", "PUT", "DELETE"].map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        </label>
        <label>
          Outcome{" "}
          <select name="outcome" value={state} onChange={filter(setState)}>
            <option value="">any</option>
            <option value="SUCCESS">SUCCESS</option>
            <option value="FAILURE">FAILURE</option>
          </select>
        </label>
      </div>
      <ErrorNote error={audits.error} />
      {!audits.data ? (
        !audits.error && <Loading />
      ) : audits.data.items.length === 0 ? (
        <Empty>No record matches.</Empty>
      ) : (
        <table id="audits">
          <thead>
            <tr>
              <th>When</th>
              <th>Actor</th>
              <th>Method</th>
              <th>Path</th>
              <th>Status</th>
              <th>Outcome</th>
            </tr>
          </thead>
          <tbody>
            {audits.data.items.map((a) => (
              <tr key={a.id}>
                <td>{when(a.operated_at)}</td>
                <td>
                  {a.actor_name || "anonymous"} <span class="hint">{a.actor_type}</span>
                </td>
                <td>{a.operation}</td>
                <td class="wrap">
                  <code>{a.path}</code>
                </td>
                <td>{a.status_code}</td>
                <td>
                  <StateBadge state={a.state} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {audits.data && <Pager page={page} perPage={PER_PAGE} total={audits.data.total} onPage={setPage} />}
    </>
  );
}
