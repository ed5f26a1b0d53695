// Commands to daemons over the command channel (issue 25): the daemons connected now, a form
// to send gc / delete_task / set_log_level / refresh_config to one host or to a whole scheduler
// cluster, and the commands sent, newest first, with each host's result. The list polls while
// a command is pending; the manager decides who may send (RBAC object `commands`).
import { useState } from "preact/hooks";
import { api, list } from "../api.js";
import { ErrorNote } from "../components/notes.js";
import { Pager } from "../components/pager.js";
import { StateBadge, StateCell } from "../components/state.js";
import { Listing, Table } from "../components/table.js";
import { ago, when } from "../format.js";
import { useAction, useLoad } from "../hooks.js";

const PER_PAGE = 20;
const POLL_MS = 1000;
const TYPES = ["gc", "delete_task", "set_log_level", "refresh_config"] as const;
const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

interface ConnectedHost {
  host_id: string;
  hostname: string;
  ip: string;
  seed_peer: boolean;
  scheduler_cluster_ids: number[];
  connected_at: string;
}
interface HostResult {
  host_id: string;
  hostname: string;
  state: string;
  error: string;
  result: { tasks_removed?: number; bytes_freed?: number; previous_log_level?: string; schedulers?: string[]; schedulers_changed?: boolean };
}
interface HostCommand {
  id: number;
  type: string;
  args: { task_id?: string; level?: string };
  host_id: string | null;
  scheduler_cluster_id: number | null;
  state: string;
  error: string;
  results: HostResult[];
  created_at: string;
}

/** What a host's answer says, in a few words. */
function outcome(r: HostResult): string {
  if (r.error) return r.error;
  const o = r.result;
  if (o.tasks_removed !== undefined) return `${o.tasks_removed} task(s), ${o.bytes_freed ?? 0} bytes freed`;
  if (o.previous_log_level !== undefined) return `was ${o.previous_log_level}`;
  if (o.schedulers !== undefined) return `${o.schedulers_changed ? "new schedulers" : "unchanged"}: ${o.schedulers.join(", ") || "none"}`;
  return "";
}

export function Commands() {
  const [page, setPage] = useState(1);
  const hosts = useLoad(() => api<ConnectedHost[]>("GET", "/api/v1/commands/hosts"), []);
  const commands = useLoad(
    () => list<HostCommand>("/api/v1/commands", { page, per_page: PER_PAGE }),
    [page],
    (d) => (d.items.some((c) => c.state === "PENDING") ? POLL_MS : undefined),
  );

  return (
    <>
      <h1>Commands</h1>
      <section aria-labelledby="hosts-title">
        <h2 id="hosts-title">Connected daemons</h2>
        <Listing
          data={hosts.data}
          error={hosts.error}
          isEmpty={(d) => d.length === 0}
          empty="No daemon is connected to this manager's command channel."
          render={(d) => (
            <Table id="command-hosts" head={["Host id", "Host", "Scheduler clusters", "Connected"]}>
              {d.map((h) => (
                <tr key={h.host_id}>
                  <td>
                    <code>{h.host_id}</code>
                  </td>
                  <td>
                    {h.hostname} <span class="hint">{h.seed_peer ? "seed peer" : "peer"}</span>
                  </td>
                  <td>{h.scheduler_cluster_ids.join(", ") || "none yet"}</td>
                  <td>{ago(h.connected_at)}</td>
                </tr>
              ))}
            </Table>
          )}
        />
      </section>
      <SendCommand
        onSent={() => {
          setPage(1);
          commands.reload();
        }}
      />
      <section aria-labelledby="commands-title">
        <h2 id="commands-title">Sent</h2>
        <Listing
          data={commands.data}
          error={commands.error}
          isEmpty={(d) => d.items.length === 0}
          empty="No command was sent yet."
          render={(d) => (
            <Table id="commands" head={["Sent", "Command", "Target", "State", "Hosts"]}>
              {d.items.map((c) => (
                <tr key={c.id}>
                  <td>{when(c.created_at)}</td>
                  <td>
                    {c.type} <span class="hint">{c.args.task_id ?? c.args.level ?? ""}</span>
                  </td>
                  <td>{c.host_id ? <code>{c.host_id}</code> : `scheduler cluster ${c.scheduler_cluster_id ?? ""}`}</td>
                  <StateCell state={c.state} />
                  <td class="wrap">
                    {c.error}
                    {c.results.map((r) => (
                      <div key={r.host_id}>
                        <StateBadge state={r.state} /> {r.hostname || r.host_id}: {outcome(r)}
                      </div>
                    ))}
                  </td>
                </tr>
              ))}
            </Table>
          )}
        />
        {commands.data && <Pager page={page} perPage={PER_PAGE} total={commands.data.total} onPage={setPage} />}
      </section>
    </>
  );
}

function SendCommand({ onSent }: { onSent: () => void }) {
  const [type, setType] = useState<(typeof TYPES)[number]>("gc");
  const [target, setTarget] = useState<"host" | "cluster">("host");
  const [hostId, setHostId] = useState("");
  const [clusterId, setClusterId] = useState("1");
  const [taskId, setTaskId] = useState("");
  const [level, setLevel] = useState<(typeof LEVELS)[number]>("info");
  const action = useAction();

  const submit = async (e: Event) => {
    e.preventDefault();
    const args = type === "delete_task" ? { task_id: taskId } : type === "set_log_level" ? { level } : {};
    const sent = await action.run(() => api<HostCommand>("POST", "/api/v1/commands", { type, args, ...(target === "host" ? { host_id: hostId } : { scheduler_cluster_id: Number(clusterId) }) }));
    if (sent) onSent();
  };

  return (
    <form class="card form-grid" onSubmit={(e) => void submit(e)} aria-labelledby="send-command-title">
      <h2 id="send-command-title">Send a command</h2>
      <label>
        Command
        <select name="command-type" value={type} onChange={(e) => setType(e.currentTarget.value as (typeof TYPES)[number])}>
          {TYPES.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
      </label>
      <label>
        To
        <select name="command-target" value={target} onChange={(e) => setTarget(e.currentTarget.value as "host" | "cluster")}>
          <option value="host">one host</option>
          <option value="cluster">every daemon of a scheduler cluster</option>
        </select>
      </label>
      {target === "host" ? (
        <label>
          Host id
          <input name="command-host" required maxLength={256} value={hostId} onInput={(e) => setHostId(e.currentTarget.value)} placeholder="10.0.0.1-node-1" />
        </label>
      ) : (
        <label>
          Scheduler cluster id
          <input name="command-cluster" required type="number" min={1} value={clusterId} onInput={(e) => setClusterId(e.currentTarget.value)} />
        </label>
      )}
      {type === "delete_task" && (
        <label>
          Task id
          <input name="command-task" required maxLength={1024} value={taskId} onInput={(e) => setTaskId(e.currentTarget.value)} />
        </label>
      )}
      {type === "set_log_level" && (
        <label>
          Level
          <select name="command-level" value={level} onChange={(e) => setLevel(e.currentTarget.value as (typeof LEVELS)[number])}>
            {LEVELS.map((l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        </label>
      )}
      <ErrorNote error={action.error} />
      <div class="actions wide">
        <button type="submit" class="primary" disabled={action.busy}>
          Send
        </button>
      </div>
    </form>
  );
}
