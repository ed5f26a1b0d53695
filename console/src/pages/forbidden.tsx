// 403: the manager refused something to the signed-in user's role. Names the call, the
// manager's reason and the user's roles, so it is clear whom to ask for which permission.
import type { Refusal } from "../hooks.js";
import { useMe } from "../me.js";
import { Link } from "../router.js";

function isRefusal(v: unknown): v is Refusal {
  return typeof v === "object" && v !== null && typeof (v as Refusal).message === "string" && typeof (v as Refusal).path === "string";
}

export function Forbidden() {
  const me = useMe();
  const refusal = isRefusal(window.history.state) ? window.history.state : undefined;
  return (
    <section class="status-page" aria-labelledby="forbidden-title">
      <p class="status-code">403</p>
      <h1 id="forbidden-title">Not allowed</h1>
      {refusal ? (
        <>
          <p>
            The manager refused <code>{`${refusal.method} ${refusal.path}`}</code> to <strong>{me.user.name}</strong>:
          </p>
          <p class="reason" id="forbidden-reason">
            {refusal.message}
          </p>
        </>
      ) : (
        <p>The manager refused that to {me.user.name}.</p>
      )}
      <p>
        Your roles: <strong id="my-roles">{me.roles.join(", ") || "none"}</strong>. An administrator can give you a role that allows it.
      </p>
      <p>
        {refusal && refusal.from !== "/403" ? (
          <>
            <Link href={refusal.from}>← Back</Link> ·{" "}
          </>
        ) : null}
        <Link href="/">Overview</Link>
      </p>
    </section>
  );
}
