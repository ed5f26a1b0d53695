// Tenants (root only): the groups that own clusters, users, jobs and tokens; objects of one
// tenant are invisible to the others' users. Another role gets the 403 page.
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorNote } from "../components/notes.js";
import { Listing, Table } from "../components/table.js";
import { ago } from "../format.js";
import { useAction, useLoad } from "../hooks.js";

interface Tenant {
  id: number;
  name: string;
  bio: string;
  created_at: string;
}

export function Tenants() {
  const tenants = useLoad(() => api<Tenant[]>("GET", "/api/v1/tenants"), []);
  const [name, setName] = useState("");
  const [bio, setBio] = useState("");
  const action = useAction();

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!(await action.run(() => api<Tenant>("POST", "/api/v1/tenants", { name, ...(bio ? { bio } : {}) })))) return;
    setName("");
    setBio("");
    tenants.reload();
  };

  return (
    <>
      <h1>Tenants</h1>
      <form class="card form-grid" onSubmit={(e) => void submit(e)} aria-labelledby="create-tenant-title">
        <h2 id="create-tenant-title">New tenant</h2>
        <label>
          Name
          <input name="tenant-name" required maxLength={256} pattern="[A-Za-z0-9_.\-]+" value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Description (optional)
          <input name="tenant-bio" maxLength={1024} value={bio} onInput={(e) => setBio(e.currentTarget.value)} />
        </label>
        <ErrorNote error={action.error} />
        <div class="actions wide">
          <button type="submit" class="primary" disabled={action.busy}>
            Create tenant
          </button>
        </div>
      </form>
      <Listing
        data={tenants.data}
        error={tenants.error}
        isEmpty={(d) => d.length === 0}
        empty="No tenant."
        render={(d) => (
          <Table id="tenants" head={["Id", "Name", "Description", "Created"]}>
            {d.map((t) => (
              <tr key={t.id} data-tenant={t.name}>
                <td>{t.id}</td>
                <td>{t.name}</td>
                <td>{t.bio}</td>
                <td>{ago(t.created_at)}</td>
              </tr>
            ))}
          </Table>
        )}
      />
    </>
  );
}
