// A state as a coloured badge: jobs (PENDING … SUCCESS/FAILURE), hosts (active/inactive),
// tokens and users (active/enable …), audit outcomes.
const TONE: Record<string, string> = {
  SUCCESS: "ok",
  active: "ok",
  enable: "ok",
  FAILURE: "bad",
  inactive: "muted",
  disable: "muted",
  PENDING: "wait",
  RECEIVED: "wait",
  STARTED: "run",
  RETRY: "wait",
};

export function StateBadge({ state }: { state: string }) {
  return (
    <span class={`badge badge-${TONE[state] ?? "muted"}`} data-state={state}>
      {state}
    </span>
  );
}

export function StateCell({ state }: { state: string }) {
  return (
    <td>
      <StateBadge state={state} />
    </td>
  );
}
