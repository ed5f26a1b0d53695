// The fleet at a glance: clusters, schedulers, seed peers and peers with their state, and the
// jobs by state. Refreshed every few seconds; "Sync peers" asks each cluster's scheduler for
// its hosts now (a sync_peers job) instead of waiting for the manager's periodic one.
import { api, list } from "../api.js";
import { Empty, ErrorNote, Loading } from "../components/notes.js";
import { StateBadge } from "../components/state.js";
import { ago, jobTarget } from "../format.js";
import { useAction, useLoad } from "../hooks.js";
import { Link } from "../router.js";
import { FINAL_JOB_STATES, JOB_STATES, type Cluster, type Job, type Peer, type Scheduler, type SeedPeer } from "../types.js";

const LIVE_MS = 5000;
const SHOWN = 100;

interface Fleet {
  clusters: Cluster[];
  schedulers: { items: Scheduler[]; total: number };
  seedPeers: { items: SeedPeer[]; total: number };
  peers: { items: Peer[]; total: number };
  jobCounts: Array<[string, number]>;
  recentJobs: Job[];
}

async function loadFleet(): Promise<Fleet> {
  const [clusters, schedulers, seedPeers, peers, recent, ...counts] = await Promise.all([
    list<Cluster>("/api/v1/clusters", { per_page: SHOWN }),
    list<Scheduler>("/api/v1/schedulers", { per_page: SHOWN }),
    list<SeedPeer>("/api/v1/seed-peers", { per_page: SHOWN }),
    list<Peer>("/api/v1/peers", { per_page: SHOWN }),
    list<Job>("/api/v1/jobs", { per_page: 5 }),
    ...JOB_STATES.map((state) => list<Job>("/api/v1/jobs", { state, per_page: 1 })),
  ]);
  return { clusters: clusters.items, schedulers, seedPeers, peers, recentJobs: recent.items, jobCounts: JOB_STATES.map((s, i) => [s, counts[i]?.total ?? 0]) };
}

const activeOf = (rows: Array<{ state: string }>) => rows.filter((r) => r.state === "active").length;

async function waitForJob(id: number): Promise<Job> {
  for (;;) {
    const job = await api<Job>("GET", `/api/v1/jobs/${id}`);
    if (FINAL_JOB_STATES.includes(job.state)) return job;
    await new Promise((r) => setTimeout(r, 500));
  }
}

export function Overview() {
  const fleet = useLoad(loadFleet, [], () => LIVE_MS);
  const sync = useAction();
  const f = fleet.data;

  const syncPeers = async () => {
    const job = await sync.run(async () => {
      const created = await api<Job>("POST", "/api/v1/jobs", { type: "sync_peers" });
      const done = await waitForJob(created.id);
      if (done.state === "FAILURE") throw new Error(`sync_peers job ${done.id} failed: ${done.result.job_states?.map((s) => s.error).filter(Boolean).join("; ") || "no reason given"}`);
      return done;
    });
    if (job) fleet.reload();
  };

  if (!f) return fleet.error ? <ErrorNote error={fleet.error} /> : <Loading />;
  return (
    <>
      <h1>Overview</h1>
      <ErrorNote error={fleet.error} />
      <section class="stats" aria-label="summary">
        <Stat label="Clusters" value={String(f.clusters.length)} />
        <Stat label="Schedulers active" value={`${activeOf(f.schedulers.items)} / ${f.schedulers.total}`} />
        <Stat label="Seed peers active" value={`${activeOf(f.seedPeers.items)} / ${f.seedPeers.total}`} />
        <Stat label="Peers active" value={`${activeOf(f.peers.items)} / ${f.peers.total}`} />
        <Stat label="Jobs running" value={String(f.jobCounts.filter(([s]) => !FINAL_JOB_STATES.includes(s)).reduce((n, [, c]) => n + c, 0))} />
      </section>

      <section aria-labelledby="clusters-title">
        <h2 id="clusters-title">Clusters</h2>
        {f.clusters.length === 0 ? (
          <Empty>No cluster yet.</Empty>
        ) : (
          <table id="clusters">
            <thead>
              <tr>
                <th>Name</th>
                <th>Scheduler cluster</th>
                <th>Seed peer cluster</th>
                <th>Default</th>
                <th>Description</th>
              </tr>
            </thead>
            <tbody>
              {f.clusters.map((c) => (
                <tr key={c.id}>
                  <td>
                    <Link href={`/clusters/${c.id}`}>{c.name}</Link>
                  </td>
                  <td>{c.scheduler_cluster_id}</td>
                  <td>{c.seed_peer_cluster_id || "none"}</td>
                  <td>{c.is_default ? "yes" : "no"}</td>
                  <td>{c.bio}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section aria-labelledby="schedulers-title">
        <h2 id="schedulers-title">Schedulers</h2>
        {f.schedulers.items.length === 0 ? (
          <Empty>No scheduler has registered with this manager.</Empty>
        ) : (
          <table id="schedulers">
            <thead>
              <tr>
                <th>Host</th>
                <th>Address</th>
                <th>State</th>
                <th>Features</th>
                <th>Cluster</th>
                <th>Last keepalive</th>
              </tr>
            </thead>
            <tbody>
              {f.schedulers.items.map((s) => (
                <tr key={s.id}>
                  <td>{s.host_name}</td>
                  <td>
                    {s.ip}:{s.port}
                  </td>
                  <td>
                    <StateBadge state={s.state} />
                  </td>
                  <td>{s.features.join(", ")}</td>
                  <td>{s.scheduler_cluster_id}</td>
                  <td>{ago(s.last_keep_alive_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section aria-labelledby="seed-peers-title">
        <h2 id="seed-peers-title">Seed peers</h2>
        {f.seedPeers.items.length === 0 ? (
          <Empty>No seed peer has registered with this manager.</Empty>
        ) : (
          <table id="seed-peers">
            <thead>
              <tr>
                <th>Host</th>
                <th>Upload address</th>
                <th>Type</th>
                <th>State</th>
                <th>Seed peer cluster</th>
              </tr>
            </thead>
            <tbody>
              {f.seedPeers.items.map((s) => (
                <tr key={s.id}>
                  <td>{s.host_name}</td>
                  <td>
                    {s.ip}:{s.port}
                  </td>
                  <td>{s.type}</td>
                  <td>
                    <StateBadge state={s.state} />
                  </td>
                  <td>{s.seed_peer_cluster_id}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section aria-labelledby="peers-title">
        <div class="section-head">
          <h2 id="peers-title">Peers</h2>
          <button type="button" onClick={() => void syncPeers()} disabled={sync.busy}>
            {sync.busy ? "Syncing peers…" : "Sync peers"}
          </button>
        </div>
        <ErrorNote error={sync.error} />
        {f.peers.items.length === 0 ? (
          <Empty>No peer known yet: the manager lists the hosts its schedulers report (Sync peers asks them now).</Empty>
        ) : (
          <table id="peers">
            <thead>
              <tr>
                <th>Host</th>
                <th>Address</th>
                <th>Type</th>
                <th>State</th>
                <th>Version</th>
                <th>Cluster</th>
                <th>Updated</th>
              </tr>
            </thead>
            <tbody>
              {f.peers.items.map((p) => (
                <tr key={p.id}>
                  <td>{p.host_name}</td>
                  <td>
                    {p.ip}:{p.port}
                  </td>
                  <td>{p.type}</td>
                  <td>
                    <StateBadge state={p.state} />
                  </td>
                  <td>{p.git_version}</td>
                  <td>{p.scheduler_cluster_id}</td>
                  <td>{ago(p.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {f.peers.total > f.peers.items.length && <p class="hint">The first {f.peers.items.length} of {f.peers.total} peers.</p>}
      </section>

      <section aria-labelledby="jobs-title">
        <div class="section-head">
          <h2 id="jobs-title">Jobs</h2>
          <Link href="/jobs">All jobs →</Link>
        </div>
        <ul class="job-counts" id="job-counts">
          {f.jobCounts.map(([state, n]) => (
            <li key={state}>
              <StateBadge state={state} /> <span data-count={state}>{n}</span>
            </li>
          ))}
        </ul>
        {f.recentJobs.length === 0 ? (
          <Empty>No job yet.</Empty>
        ) : (
          <table id="recent-jobs">
            <tbody>
              {f.recentJobs.map((j) => (
                <tr key={j.id}>
                  <td>
                    <Link href={`/jobs/${j.id}`}>#{j.id}</Link>
                  </td>
                  <td>{j.type}</td>
                  <td class="wrap">{jobTarget(j.args)}</td>
                  <td>
                    <StateBadge state={j.state} />
                  </td>
                  <td>{ago(j.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}

function Stat({ label, value }: { label: string; value: string }) {
  return (
    <div class="stat">
      <span class="stat-value">{value}</span>
      <span class="stat-label">{label}</span>
    </div>
  );
}
