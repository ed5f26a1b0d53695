// The fleet at a glance: clusters, schedulers, seed peers and peers with their state, and the
// jobs by state. Refreshed every few seconds. Seed peers and peers are the hosts the schedulers
// report (the peers table, type super or normal): Dragonfly's seed peers stopped registering
// with the manager in 2025 and schedulers learn them from AnnounceHost. Seed peers that did
// register (older clients, /api/v1/seed-peers) are listed too when there are any. "Sync peers"
// asks each cluster's scheduler for its hosts now (a sync_peers job) instead of waiting for the
// manager's periodic one.
import { list } from "../api.js";
import { Empty, ErrorNote, Loading } from "../components/notes.js";
import { JobRow } from "../components/job-row.js";
import { StateBadge, StateCell } from "../components/state.js";
import { Address, Table } from "../components/table.js";
import { ago } from "../format.js";
import { useAction, useLoad } from "../hooks.js";
import { jobErrors, runJob } from "../jobs.js";
import { Link } from "../router.js";
import { FINAL_JOB_STATES, JOB_STATES, type Cluster, type Job, type Peer, type Scheduler, type SeedPeer } from "../types.js";

const LIVE_MS = 5000;
const SHOWN = 100;

interface Fleet {
  clusters: Cluster[];
  schedulers: { items: Scheduler[]; total: number };
  /** Hosts of type super that schedulers report. */
  seedPeers: { items: Peer[]; total: number };
  /** Seed peers registered with the manager themselves (UpdateSeedPeer, older Dragonfly clients). */
  registeredSeedPeers: { items: SeedPeer[]; total: number };
  peers: { items: Peer[]; total: number };
  jobCounts: Array<[string, number]>;
  recentJobs: Job[];
}

async function loadFleet(): Promise<Fleet> {
  const [clusters, schedulers, seedPeers, registeredSeedPeers, peers, recent, ...counts] = await Promise.all([
    list<Cluster>("/api/v1/clusters", { per_page: SHOWN }),
    list<Scheduler>("/api/v1/schedulers", { per_page: SHOWN }),
    list<Peer>("/api/v1/peers", { type: "super", per_page: SHOWN }),
    list<SeedPeer>("/api/v1/seed-peers", { per_page: SHOWN }),
    list<Peer>("/api/v1/peers", { type: "normal", per_page: SHOWN }),
    list<Job>("/api/v1/jobs", { per_page: 5 }),
    ...JOB_STATES.map((state) => list<Job>("/api/v1/jobs", { state, per_page: 1 })),
  ]);
  return { clusters: clusters.items, schedulers, seedPeers, registeredSeedPeers, peers, recentJobs: recent.items, jobCounts: JOB_STATES.map((s, i) => [s, counts[i]?.total ?? 0]) };
}

const activeOf = (rows: Array<{ state: string }>) => rows.filter((r) => r.state === "active").length;

export function Overview() {
  const fleet = useLoad(loadFleet, [], () => LIVE_MS);
  const sync = useAction();
  const f = fleet.data;

  const syncPeers = async () => {
    const job = await sync.run(async () => {
      const done = await runJob({ type: "sync_peers" });
      if (done.state === "FAILURE") throw new Error(`sync_peers job ${done.id} failed: ${jobErrors(done)}`);
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
        <Stat label="Seed peers active" value={`${activeOf(f.seedPeers.items) + activeOf(f.registeredSeedPeers.items)} / ${f.seedPeers.total + f.registeredSeedPeers.total}`} />
        <Stat label="Peers active" value={`${activeOf(f.peers.items)} / ${f.peers.total}`} />
        <Stat label="Jobs running" value={String(f.jobCounts.filter(([s]) => !FINAL_JOB_STATES.includes(s)).reduce((n, [, c]) => n + c, 0))} />
      </section>

      <section aria-labelledby="clusters-title">
        <h2 id="clusters-title">Clusters</h2>
        {f.clusters.length === 0 ? (
          <Empty>No cluster yet.</Empty>
        ) : (
          <Table id="clusters" head={["Name", "Scheduler cluster", "Seed peer cluster", "Default", "Description"]}>
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
          </Table>
        )}
      </section>

      <section aria-labelledby="schedulers-title">
        <h2 id="schedulers-title">Schedulers</h2>
        {f.schedulers.items.length === 0 ? (
          <Empty>No scheduler has registered with this manager.</Empty>
        ) : (
          <Table id="schedulers" head={["Host", "Address", "State", "Features", "Cluster", "Last keepalive"]}>
            {f.schedulers.items.map((s) => (
              <tr key={s.id}>
                <td>{s.host_name}</td>
                <Address ip={s.ip} port={s.port} />
                <StateCell state={s.state} />
                <td>{s.features.join(", ")}</td>
                <td>{s.scheduler_cluster_id}</td>
                <td>{ago(s.last_keep_alive_at)}</td>
              </tr>
            ))}
          </Table>
        )}
      </section>

      <section aria-labelledby="seed-peers-title">
        <div class="section-head">
          <h2 id="seed-peers-title">Seed peers</h2>
          <button type="button" onClick={() => void syncPeers()} disabled={sync.busy}>
            {sync.busy ? "Syncing peers…" : "Sync peers"}
          </button>
        </div>
        <ErrorNote error={sync.error} />
        {f.seedPeers.items.length === 0 && f.registeredSeedPeers.items.length === 0 ? (
          <Empty>No seed peer known yet: the manager lists the hosts its schedulers report (Sync peers asks them now).</Empty>
        ) : (
          f.seedPeers.items.length > 0 && <Hosts id="seed-peers" hosts={f.seedPeers.items} total={f.seedPeers.total} />
        )}
        {f.registeredSeedPeers.items.length > 0 && (
          <>
            <h3>Registered with the manager</h3>
            <Table id="registered-seed-peers" head={["Host", "Upload address", "State", "Seed peer cluster"]}>
              {f.registeredSeedPeers.items.map((s) => (
                <tr key={s.id}>
                  <td>{s.host_name}</td>
                  <Address ip={s.ip} port={s.port} />
                  <StateCell state={s.state} />
                  <td>{s.seed_peer_cluster_id}</td>
                </tr>
              ))}
            </Table>
          </>
        )}
      </section>

      <section aria-labelledby="peers-title">
        <h2 id="peers-title">Peers</h2>
        {f.peers.items.length === 0 ? <Empty>No peer known yet.</Empty> : <Hosts id="peers" hosts={f.peers.items} total={f.peers.total} />}
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
          <Table id="recent-jobs" head={["Job", "Type", "Source", "State", "Created"]}>
            {f.recentJobs.map((j) => (
              <JobRow key={j.id} job={j} />
            ))}
          </Table>
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

/** Hosts the schedulers reported, with their state. */
function Hosts({ id, hosts, total }: { id: string; hosts: Peer[]; total: number }) {
  return (
    <>
      <Table id={id} head={["Host", "Address", "State", "Version", "OS", "Cluster", "Updated"]}>
        {hosts.map((p) => (
          <tr key={p.id} data-host={p.host_name}>
            <td>{p.host_name}</td>
            <Address ip={p.ip} port={p.port} />
            <StateCell state={p.state} />
            <td>{p.git_version}</td>
            <td>{p.os}</td>
            <td>{p.scheduler_cluster_id}</td>
            <td>{ago(p.updated_at)}</td>
          </tr>
        ))}
      </Table>
      {total > hosts.length && <p class="hint">The first {hosts.length} of {total}.</p>}
    </>
  );
}
