// Jobs: preheat a file or an image into the seed peers (POST /api/v1/jobs, the body Harbor
// sends), then the list of jobs, refreshed while any of them is still running.
import { useState } from "preact/hooks";
import { api, list } from "../api.js";
import { FilterSelect } from "../components/filter.js";
import { ErrorNote } from "../components/notes.js";
import { Pager } from "../components/pager.js";
import { JobRow } from "../components/job-row.js";
import { Listing, Table } from "../components/table.js";
import { useAction, useLoad } from "../hooks.js";
import { navigate } from "../router.js";
import { FINAL_JOB_STATES, JOB_STATES, type Cluster, type Job } from "../types.js";

const PER_PAGE = 20;
const JOB_TYPES = ["preheat", "sync_peers", "get_task", "delete_task"] as const;
const RUNNING_REFRESH_MS = 2000;
const SCOPES = [
  ["single_seed_peer", "one seed peer"],
  ["all_seed_peers", "every seed peer"],
  ["all_peers", "every peer"],
] as const;

export function Jobs() {
  const [page, setPage] = useState(1);
  const [state, setState] = useState("");
  const [type, setType] = useState("");
  const jobs = useLoad(() => list<Job>("/api/v1/jobs", { page, per_page: PER_PAGE, state, type }), [page, state, type], (d) =>
    d.items.some((j) => !FINAL_JOB_STATES.includes(j.state)) ? RUNNING_REFRESH_MS : undefined,
  );
  const narrow = (set: (v: string) => void) => (v: string) => {
    set(v);
    setPage(1);
  };

  return (
    <>
      <h1>Jobs</h1>
      <PreheatForm />
      <section aria-labelledby="job-list-title">
        <div class="section-head">
          <h2 id="job-list-title">All jobs</h2>
          <div class="filters">
            <FilterSelect name="type-filter" label="Type" value={type} options={JOB_TYPES} onChange={narrow(setType)} />
            <FilterSelect name="state-filter" label="State" value={state} options={JOB_STATES} onChange={narrow(setState)} />
          </div>
        </div>
        <Listing
          data={jobs.data}
          error={jobs.error}
          isEmpty={(d) => d.items.length === 0}
          empty="No job matches."
          render={(d) => (
            <Table id="jobs" head={["Job", "Type", "Source", "Clusters", "State", "Created"]}>
              {d.items.map((j) => (
                <JobRow key={j.id} job={j} clusters />
              ))}
            </Table>
          )}
        />
        {jobs.data && <Pager page={page} perPage={PER_PAGE} total={jobs.data.total} onPage={setPage} />}
      </section>
    </>
  );
}

function PreheatForm() {
  const clusters = useLoad(() => list<Cluster>("/api/v1/clusters", { per_page: 1000 }), []);
  const [kind, setKind] = useState<"file" | "image">("file");
  const [url, setUrl] = useState("");
  const [cluster, setCluster] = useState("");
  const [scope, setScope] = useState<string>("single_seed_peer");
  const [bio, setBio] = useState("");
  const action = useAction();

  const submit = async (e: Event) => {
    e.preventDefault();
    const job = await action.run(() =>
      api<Job>("POST", "/api/v1/jobs", {
        type: "preheat",
        ...(bio ? { bio } : {}),
        args: { type: kind, url: url.trim(), scope },
        // Absent: every cluster whose scheduler can preheat, as Dragonfly (and Harbor) do.
        ...(cluster ? { scheduler_cluster_ids: [Number(cluster)] } : {}),
      }),
    );
    if (job) navigate(`/jobs/${job.id}`);
  };

  return (
    <form class="card form-grid" onSubmit={(e) => void submit(e)} aria-labelledby="preheat-title">
      <h2 id="preheat-title">Preheat</h2>
      <label>
        What
        <select name="kind" value={kind} onChange={(e) => setKind(e.currentTarget.value === "image" ? "image" : "file")}>
          <option value="file">a file (URL)</option>
          <option value="image">an image (manifest URL)</option>
        </select>
      </label>
      <label class="wide">
        URL
        <input
          name="url"
          type="url"
          required
          placeholder={kind === "file" ? "https://example.com/big-file.tar.gz" : "https://registry.example.com/v2/library/alpine/manifests/3.20"}
          value={url}
          onInput={(e) => setUrl(e.currentTarget.value)}
          aria-invalid={action.field === "body.args.url"}
        />
      </label>
      <label>
        Cluster
        <select name="cluster" value={cluster} onChange={(e) => setCluster(e.currentTarget.value)}>
          <option value="">every cluster that can preheat</option>
          {(clusters.data?.items ?? []).map((c) => (
            <option key={c.id} value={String(c.scheduler_cluster_id)}>
              {c.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Into
        <select name="scope" value={scope} onChange={(e) => setScope(e.currentTarget.value)}>
          {SCOPES.map(([v, label]) => (
            <option key={v} value={v}>
              {label}
            </option>
          ))}
        </select>
      </label>
      <label class="wide">
        Description (optional)
        <input name="bio" maxLength={1024} value={bio} onInput={(e) => setBio(e.currentTarget.value)} />
      </label>
      <ErrorNote error={action.error ?? clusters.error} />
      <div class="actions wide">
        <button type="submit" class="primary" disabled={action.busy}>
          {action.busy ? "Creating…" : "Preheat"}
        </button>
      </div>
    </form>
  );
}
