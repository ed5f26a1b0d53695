// Sign-in with a manager account (POST /api/v1/users/signin). The first account is root; its
// password is in <data dir>/manager/initial-root-password (or DRAGONFLY_INITIAL_ROOT_PASSWORD).
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorNote } from "../components/notes.js";
import { useAction } from "../hooks.js";
import { localPath, navigate } from "../router.js";
import { sessionEndedBecause, setSession } from "../session.js";
import type { TokenResponse } from "../types.js";

export function SignIn({ next }: { next: string | null }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const action = useAction();
  const ended = sessionEndedBecause();

  const submit = async (e: Event) => {
    e.preventDefault();
    const t = await action.run(() => api<TokenResponse>("POST", "/api/v1/users/signin", { name, password }));
    if (!t) return;
    setSession(t);
    navigate(localPath(next), { replace: true });
  };

  return (
    <main class="signin">
      <form class="card" onSubmit={(e) => void submit(e)} aria-labelledby="signin-title">
        <h1 id="signin-title">
          <img src="/favicon.svg" alt="" width={28} height={28} /> Damselfly
        </h1>
        {ended && <p class="notice">{ended}</p>}
        <label>
          User name
          <input name="name" autoComplete="username" required minLength={3} maxLength={10} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete="current-password" required minLength={8} maxLength={20} value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        <ErrorNote error={action.error} />
        <button type="submit" class="primary" disabled={action.busy}>
          {action.busy ? "Signing in…" : "Sign in"}
        </button>
        <p class="hint">
          First sign-in: user <code>root</code>, password in <code>manager/initial-root-password</code> under the data dir (<code>damselfly up</code> prints the file).
        </p>
      </form>
    </main>
  );
}
