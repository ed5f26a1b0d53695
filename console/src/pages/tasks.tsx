// Tasks: where a file is cached in the clusters, and deleting it from every peer. A task is
// named by its URL (its id is derived as the peers derive it: no tag, application or piece
// length) or by its 64-hex id. Both are jobs (get_task, delete_task) the manager runs against
// each cluster's scheduler and the peers it knows; the page waits for their result.
import { useState } from "preact/hooks";
import { ErrorNote, Empty } from "../components/notes.js";
import { StateBadge } from "../components/state.js";
import { Table } from "../components/table.js";
import { ago } from "../format.js";
import { useAction } from "../hooks.js";
import { jobErrors, runJob } from "../jobs.js";
import { Link } from "../router.js";
import type { Job } from "../types.js";

const TASK_ID = /^[0-9a-f]{64}$/;

function taskArgs(what: string): Record<string, string> {
  const v = what.trim();
  if (TASK_ID.test(v)) return { task_id: v };
  if (/^https?:\/\//i.test(v)) return { url: v };
  throw new Error("Give the file's http(s) URL or its task id (64 hexadecimal characters).");
}

export function Tasks() {
  const [what, setWhat] = useState("");
  const [found, setFound] = useState<Job | undefined>(undefined);
  const [deleted, setDeleted] = useState<Job | undefined>(undefined);
  const find = useAction();
  const del = useAction();

  const lookUp = async (e?: Event) => {
    e?.preventDefault();
    setDeleted(undefined);
    const job = await find.run(async () => runJob({ type: "get_task", args: taskArgs(what) }));
    setFound(job);
  };
  const remove = async () => {
    if (!window.confirm("Delete this task from every peer of every cluster? The next download fetches it from its origin again.")) return;
    const job = await del.run(async () => {
      const done = await runJob({ type: "delete_task", args: taskArgs(what) });
      if (done.state === "FAILURE") throw new Error(`delete_task job ${done.id} failed: ${jobErrors(done)}`);
      return done;
    });
    if (!job) return;
    setDeleted(job);
    setFound(await find.run(async () => runJob({ type: "get_task", args: taskArgs(what) })));
  };

  const holders = (found?.result.job_states ?? []).flatMap((s) => s.results.flatMap((r) => (r.peers ?? []).map((p) => ({ ...p, cluster: r.scheduler_cluster_id ?? 0 }))));
  const taskId = found?.result.job_states?.flatMap((s) => s.results.map((r) => r.task_id)).find(Boolean);

  return (
    <>
      <h1>Tasks</h1>
      <form class="card form-grid" onSubmit={(e) => void lookUp(e)} aria-labelledby="find-task-title">
        <h2 id="find-task-title">Find a task</h2>
        <label class="wide">
          URL or task id
          <input name="task" required value={what} onInput={(e) => setWhat(e.currentTarget.value)} placeholder="https://example.com/big-file.tar.gz" />
        </label>
        <ErrorNote error={find.error} />
        <div class="actions wide">
          <button type="submit" class="primary" disabled={find.busy || del.busy}>
            {find.busy ? "Asking the peers…" : "Find"}
          </button>
        </div>
      </form>
      {found && (
        <section aria-labelledby="holders-title">
          <div class="section-head">
            <h2 id="holders-title">
              Cached on <StateBadge state={found.state} />
            </h2>
            <button type="button" class="danger" onClick={() => void remove()} disabled={del.busy || find.busy || holders.length === 0}>
              {del.busy ? "Deleting…" : "Delete from every peer"}
            </button>
          </div>
          <p class="hint">
            Task <code id="task-id">{taskId ?? "?"}</code>, asked by job <Link href={`/jobs/${found.id}`}>#{found.id}</Link>.
          </p>
          {found.state === "FAILURE" && <p class="error">{jobErrors(found)}</p>}
          <ErrorNote error={del.error} />
          {deleted && (
            <p class="notice" role="status" id="task-deleted">
              Deleted from {deleted.result.job_states?.flatMap((s) => s.results.flatMap((r) => (r.success_tasks ?? []).map((t) => t.hostname))).join(", ") || "no peer"} (job <Link href={`/jobs/${deleted.id}`}>#{deleted.id}</Link>).
            </p>
          )}
          {holders.length === 0 ? (
            <Empty>No peer holds this task.</Empty>
          ) : (
            <Table id="task-holders" head={["Host", "Address", "Type", "Complete", "Cluster", "Updated"]}>
              {holders.map((h) => (
                <tr key={`${h.cluster}-${h.hostname}-${h.ip}`} data-host={h.hostname}>
                  <td>{h.hostname}</td>
                  <td>{h.ip}</td>
                  <td>{h.host_type === "normal" ? "peer" : "seed peer"}</td>
                  <td>{h.IsFinished ? "yes" : "downloading"}</td>
                  <td>{h.cluster}</td>
                  <td>{ago(h.updated_at)}</td>
                </tr>
              ))}
            </Table>
          )}
        </section>
      )}
    </>
  );
}
