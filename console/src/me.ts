// Who is signed in: the user named by the session token and the roles the manager gives it.
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import { api } from "./api.js";
import { tokenUserId } from "./session.js";
import type { User } from "./types.js";

export interface Me {
  user: User;
  roles: string[];
}

/** Self-service routes: every user may read itself and its roles, whatever its role. */
export async function loadMe(token: string): Promise<Me> {
  const id = tokenUserId(token);
  const [user, roles] = await Promise.all([api<User>("GET", `/api/v1/users/${id}`), api<string[]>("GET", `/api/v1/users/${id}/roles`)]);
  return { user, roles };
}

export const MeContext = createContext<Me | undefined>(undefined);

export function useMe(): Me {
  const me = useContext(MeContext);
  if (!me) throw new Error("useMe outside a signed-in page");
  return me;
}
