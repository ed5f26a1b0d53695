// Users and roles: who may sign in, with which roles, and what each role may do (Dragonfly's
// casbin-style object/action pairs). Creating users needs the users permission; giving a role
// other than guest needs root — the manager refuses otherwise and the 403 page says why.
import { useState } from "preact/hooks";
import { api, list } from "../api.js";
import { ErrorNote } from "../components/notes.js";
import { Pager } from "../components/pager.js";
import { StateCell } from "../components/state.js";
import { Listing, Table } from "../components/table.js";
import { ago } from "../format.js";
import { useAction, useLoad } from "../hooks.js";
import type { Role, User } from "../types.js";

const PER_PAGE = 20;

async function loadUsers(page: number): Promise<{ users: Array<User & { roles: string[] }>; total: number }> {
  const { items, total } = await list<User>("/api/v1/users", { page, per_page: PER_PAGE });
  const roles = await Promise.all(items.map((u) => api<string[]>("GET", `/api/v1/users/${u.id}/roles`)));
  return { users: items.map((u, i) => ({ ...u, roles: roles[i] ?? [] })), total };
}

export function Users() {
  const [page, setPage] = useState(1);
  const users = useLoad(() => loadUsers(page), [page]);
  const roles = useLoad(() => api<Role[]>("GET", "/api/v1/roles"), []);

  return (
    <>
      <h1>Users and roles</h1>
      <CreateUser roles={roles.data ?? []} onCreated={users.reload} />
      <section aria-labelledby="users-title">
        <h2 id="users-title">Users</h2>
        <Listing
          data={users.data}
          error={users.error}
          isEmpty={(d) => d.users.length === 0}
          empty="No user."
          render={(d) => (
            <Table id="users" head={["Name", "Email", "Roles", "State", "Tenant", "Created"]}>
              {d.users.map((u) => (
                <tr key={u.id} data-user={u.name}>
                  <td>{u.name}</td>
                  <td>{u.email}</td>
                  <td>{u.roles.join(", ")}</td>
                  <StateCell state={u.state} />
                  <td>{u.tenant_id}</td>
                  <td>{ago(u.created_at)}</td>
                </tr>
              ))}
            </Table>
          )}
        />
        {users.data && <Pager page={page} perPage={PER_PAGE} total={users.data.total} onPage={setPage} />}
      </section>
      <section aria-labelledby="roles-title">
        <h2 id="roles-title">Roles</h2>
        <Listing
          data={roles.data}
          error={roles.error}
          isEmpty={(d) => d.length === 0}
          empty="No role."
          render={(d) => (
            <Table id="roles" head={["Role", "Permissions"]}>
              {d.map((r) => (
                <tr key={r.role}>
                  <td>{r.role}</td>
                  <td>{r.permissions.map((p) => `${p.action === "*" ? "all of" : "read"} ${p.object === "*" ? "everything" : p.object}`).join("; ") || "none"}</td>
                </tr>
              ))}
            </Table>
          )}
        />
      </section>
    </>
  );
}

function CreateUser({ roles, onCreated }: { roles: Role[]; onCreated: () => void }) {
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState("guest");
  const [created, setCreated] = useState<string | undefined>(undefined);
  const action = useAction();

  const submit = async (e: Event) => {
    e.preventDefault();
    setCreated(undefined);
    const user = await action.run(() => api<User>("POST", "/api/v1/users", { name, email, password, roles: [role] }));
    if (!user) return;
    setCreated(`User ${user.name} created with the role ${role}.`);
    setName("");
    setEmail("");
    setPassword("");
    onCreated();
  };

  return (
    <form class="card form-grid" onSubmit={(e) => void submit(e)} aria-labelledby="create-user-title">
      <h2 id="create-user-title">New user</h2>
      <label>
        Name
        <input name="user-name" required minLength={3} maxLength={10} pattern="[A-Za-z0-9_.\-]+" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        Email
        <input name="email" type="email" required maxLength={256} value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
      </label>
      <label>
        Password
        <input name="user-password" type="password" autoComplete="new-password" required minLength={8} maxLength={20} value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </label>
      <label>
        Role
        <select name="role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
          {(roles.length > 0 ? roles.map((r) => r.role) : ["guest"]).map((r) => (
            <option key={r} value={r}>
              {r}
            </option>
          ))}
        </select>
      </label>
      <ErrorNote error={action.error} />
      {created && (
        <p class="notice" role="status">
          {created}
        </p>
      )}
      <div class="actions wide">
        <button type="submit" class="primary" disabled={action.busy}>
          Create user
        </button>
      </div>
    </form>
  );
}
