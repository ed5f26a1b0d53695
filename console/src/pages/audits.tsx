// The audit log: every state-changing API call (who, what, where, outcome), newest first.
import { useState } from "preact/hooks";
import { list } from "../api.js";
import { FilterSelect } from "../components/filter.js";
import { Pager } from "../components/pager.js";
import { StateCell } from "../components/state.js";
import { Listing, Table } from "../components/table.js";
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
  const narrow = (set: (v: string) => void) => (v: string) => {
    set(v);
    setPage(1);
  };

  return (
    <>
      <h1>Audit log</h1>
      <div class="filters card">
        <label>
          Actor <input name="actor" value={actor} onChange={(e) => narrow(setActor)(e.currentTarget.value)} placeholder="user name" />
        </label>
        <FilterSelect name="operation" label="Method" value={operation} options={["POST", "PATCH", "PUT", "DELETE"]} onChange={narrow(setOperation)} />
        <FilterSelect name="outcome" label="Outcome" value={state} options={["SUCCESS", "FAILURE"]} onChange={narrow(setState)} />
      </div>
      <Listing
        data={audits.data}
        error={audits.error}
        isEmpty={(d) => d.items.length === 0}
        empty="No record matches."
        render={(d) => (
          <Table id="audits" head={["When", "Actor", "Method", "Path", "Status", "Outcome"]}>
            {d.items.map((a) => (
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
                <StateCell state={a.state} />
              </tr>
            ))}
          </Table>
        )}
      />
      {audits.data && <Pager page={page} perPage={PER_PAGE} total={audits.data.total} onPage={setPage} />}
    </>
  );
}
