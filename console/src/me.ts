// Who is signed in: the user named by the session token, the roles the manager gives it, and
// what those roles may do (to offer only the actions the manager would allow; it still decides).
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import { api } from "./api.js";
import { tokenUserId } from "./session.js";
import type { Permission, Role, User } from "./types.js";

export interface Me {
  user: User;
  roles: string[];
  /** The roles' permissions; undefined when a role could not be read (the manager then decides, and its 403 page says why). */
  permissions: Permission[] | undefined;
}

/** Self-service routes: every user may read itself and its roles, whatever its role. */
export async function loadMe(token: string): Promise<Me> {
  const id = tokenUserId(token);
  const [user, roles] = await Promise.all([api<User>("GET", `/api/v1/users/${id}`), api<string[]>("GET", `/api/v1/users/${id}/roles`)]);
  // Reading roles is a permission of its own (guests have it); without it, nothing is hidden.
  const read = await Promise.all(roles.map((r) => api<Role>("GET", `/api/v1/roles/${encodeURIComponent(r)}`).catch(() => undefined)));
  const permissions = read.every((r) => r !== undefined) ? read.flatMap((r) => r.permissions) : undefined;
  return { user, roles, permissions };
}

/** Whether the manager would let `me` change `object` (a POST, PATCH or DELETE on it: action "*"), as its RBAC check does. */
export function mayWrite(me: Me, object: string): boolean {
  if (!me.permissions) return true;
  return me.permissions.some((p) => (p.object === "*" || p.object === object) && p.action === "*");
}

export const MeContext = createContext<Me | undefined>(undefined);

export function useMe(): Me {
  const me = useContext(MeContext);
  if (!me) throw new Error("useMe outside a signed-in page");
  return me;
}
