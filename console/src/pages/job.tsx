// One job: its state, watched until it is final (SUCCESS or FAILURE), and each cluster's
// outcome — the peers that hold the file, or why it failed. A running job can be canceled (it
// ends FAILURE, marked canceled) and a failed one retried as a new job; both, like delete, are
// offered only to a role that may change jobs.
import { api } from "../api.js";
import { Empty, ErrorNote, Loading } from "../components/notes.js";
import { StateBadge } from "../components/state.js";
import { ago, when } from "../format.js";
import { useAction, useLoad } from "../hooks.js";
import { mayWrite, useMe } from "../me.js";
import { Link, navigate } from "../router.js";
import { FINAL_JOB_STATES, type Job } from "../types.js";

const WATCH_MS = 1000;

export function JobDetail({ id }: { id: number }) {
  const job = useLoad(() => api<Job>("GET", `/api/v1/jobs/${id}`), [id], (j) => (FINAL_JOB_STATES.includes(j.state) ? undefined : WATCH_MS));
  const act = useAction();
  const writable = mayWrite(useMe(), "jobs");
  const j = job.data;
  if (!j) return job.error ? <ErrorNote error={job.error} /> : <Loading />;
  const final = FINAL_JOB_STATES.includes(j.state);

  const remove = async () => {
    if (!window.confirm(`Delete job #${j.id}? Its record goes; what it preheated stays cached.`)) return;
    const done = await act.run(() => api<object>("DELETE", `/api/v1/jobs/${j.id}`));
    if (done) navigate("/jobs");
  };
  const cancel = async () => {
    if (!window.confirm(`Cancel job #${j.id}? It stops and ends FAILURE; what is already cached stays.`)) return;
    if (await act.run(() => api<Job>("POST", `/api/v1/jobs/${j.id}/cancel`))) job.reload();
  };
  const retry = async () => {
    const created = await act.run(() => api<Job>("POST", `/api/v1/jobs/${j.id}/retry`));
    if (created) navigate(`/jobs/${created.id}`);
  };

  return (
    <>
      <p class="crumbs">
        <Link href="/jobs">Jobs</Link> / #{j.id}
      </p>
      <div class="section-head">
        <h1>
          Job #{j.id} <StateBadge state={j.state} />
        </h1>
        {writable && (
          <div class="row-actions" id="job-actions">
            {!final && (
              <button type="button" onClick={() => void cancel()} disabled={act.busy}>
                Cancel job
              </button>
            )}
            {j.state === "FAILURE" && (
              <button type="button" class="primary" onClick={() => void retry()} disabled={act.busy}>
                Retry
              </button>
            )}
            <button type="button" class="danger" onClick={() => void remove()} disabled={act.busy}>
              Delete
            </button>
          </div>
        )}
      </div>
      <ErrorNote error={act.error ?? job.error} />
      {!final && <p class="notice" role="status">Running: this page follows the job until it succeeds or fails.</p>}
      {j.result.canceled === true && (
        <p class="notice" id="job-canceled">
          Canceled: {j.result.job_states?.[0]?.error ?? "the job was canceled"}.
        </p>
      )}
      <dl class="facts" id="job-facts">
        <dt>Type</dt>
        <dd>{j.type}</dd>
        <dt>State</dt>
        <dd data-job-state={j.state}>{j.state}</dd>
        <dt>Clusters</dt>
        <dd>{j.scheduler_clusters.map((c) => `${c.name} (#${c.id})`).join(", ") || "none"}</dd>
        <dt>Created</dt>
        <dd title={when(j.created_at)}>{ago(j.created_at)}</dd>
        <dt>Updated</dt>
        <dd title={when(j.updated_at)}>{ago(j.updated_at)}</dd>
        {j.bio && (
          <>
            <dt>Description</dt>
            <dd>{j.bio}</dd>
          </>
        )}
        {j.retry_of !== null && (
          <>
            <dt>Retry of</dt>
            <dd id="job-retry-of">
              <Link href={`/jobs/${j.retry_of}`}>#{j.retry_of}</Link>
            </dd>
          </>
        )}
        <dt>Group</dt>
        <dd>
          <code>{j.task_id}</code>
        </dd>
      </dl>
      <h2>Arguments</h2>
      <pre class="json">{JSON.stringify(j.args, null, 2)}</pre>
      <h2>Outcome by cluster</h2>
      {(j.result.job_states ?? []).length === 0 ? (
        <Empty>{final ? "No cluster reported." : "No cluster has finished yet."}</Empty>
      ) : (
        (j.result.job_states ?? []).map((s, i) => (
          <section key={i} class="card outcome">
            <h3>
              {s.task_name} <StateBadge state={s.state} />
            </h3>
            {s.error && <p class="error">{s.error}</p>}
            {s.results.map((r, k) => (
              <div key={k}>
                {r.scheduler_cluster_id !== undefined && <p>Scheduler cluster {r.scheduler_cluster_id}</p>}
                {r.peer_count !== undefined && <p>{r.peer_count} peers reported</p>}
                {(r.success_tasks ?? []).length > 0 && (
                  <table class="tasks">
                    <caption>Cached on</caption>
                    <tbody>
                      {(r.success_tasks ?? []).map((t, n) => (
                        <tr key={n}>
                          <td>{t.hostname}</td>
                          <td>{t.ip}</td>
                          <td class="wrap">{t.url}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                )}
                {(r.failure_tasks ?? []).length > 0 && (
                  <table class="tasks">
                    <caption>Failed</caption>
                    <tbody>
                      {(r.failure_tasks ?? []).map((t, n) => (
                        <tr key={n}>
                          <td>{t.hostname}</td>
                          <td class="wrap">{t.url}</td>
                          <td class="wrap">{t.description}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                )}
              </div>
            ))}
          </section>
        ))
      )}
    </>
  );
}
