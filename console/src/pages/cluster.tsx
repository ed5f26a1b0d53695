// One cluster (a scheduler cluster and the seed peer cluster serving it): its limits, edited
// and validated against the manager's schema ranges, and the schedulers and hosts in it.
// PATCH /api/v1/clusters/:id replaces each config object whole, so the keys this form does not
// show (block lists) are sent back as they were.
import { useEffect, useState } from "preact/hooks";
import { api, list } from "../api.js";
import { ErrorNote, Loading } from "../components/notes.js";
import { StateCell } from "../components/state.js";
import { Address, Listing, Table } from "../components/table.js";
import { ago } from "../format.js";
import { useAction, useLoad } from "../hooks.js";
import { Link } from "../router.js";
import type { Cluster, Peer, Scheduler } from "../types.js";

type Section = "scheduler_cluster_config" | "peer_cluster_config" | "seed_peer_cluster_config";

interface Limit {
  section: Section;
  key: string;
  label: string;
  min: number;
  max: number;
  help: string;
}

// The ranges of src/manager/schemas.ts (Dragonfly's manager/types): the browser checks them
// before sending, the manager checks them again and names the field.
const LIMITS: Limit[] = [
  { section: "scheduler_cluster_config", key: "candidate_parent_limit", label: "Candidate parent limit", min: 1, max: 20, help: "parents a peer is offered at once" },
  { section: "scheduler_cluster_config", key: "filter_parent_limit", label: "Filter parent limit", min: 10, max: 1000, help: "peers considered when choosing parents" },
  { section: "scheduler_cluster_config", key: "job_rate_limit", label: "Job rate limit", min: 1, max: 1_000_000, help: "jobs per second the manager accepts for this cluster" },
  { section: "peer_cluster_config", key: "load_limit", label: "Peer load limit", min: 1, max: 2000, help: "concurrent uploads a peer serves" },
  { section: "seed_peer_cluster_config", key: "load_limit", label: "Seed peer load limit", min: 1, max: 50_000, help: "concurrent uploads a seed peer serves" },
];

const fieldName = (l: Limit) => `${l.section}.${l.key}`;
const valuesOf = (c: Cluster): Record<string, string> =>
  Object.fromEntries(LIMITS.map((l) => [fieldName(l), c[l.section][l.key] === undefined ? "" : String(c[l.section][l.key] as number)]));

export function ClusterDetail({ id }: { id: number }) {
  const cluster = useLoad(() => api<Cluster>("GET", `/api/v1/clusters/${id}`), [id]);
  const members = useLoad(
    () =>
      Promise.all([
        list<Scheduler>("/api/v1/schedulers", { scheduler_cluster_id: id, per_page: 100 }),
        list<Peer>("/api/v1/peers", { scheduler_cluster_id: id, per_page: 100 }),
      ]),
    [id],
  );
  const c = cluster.data;
  if (!c) return cluster.error ? <ErrorNote error={cluster.error} /> : <Loading />;

  return (
    <>
      <p class="crumbs">
        <Link href="/">Overview</Link> / clusters / {c.name}
      </p>
      <h1>
        Cluster {c.name} {c.is_default && <span class="badge badge-muted">default</span>}
      </h1>
      {c.bio && <p>{c.bio}</p>}
      <ConfigForm cluster={c} onSaved={cluster.reload} />
      <section aria-labelledby="members-title">
        <h2 id="members-title">Schedulers and hosts</h2>
        <Listing
          data={members.data}
          error={members.error}
          isEmpty={([schedulers, hosts]) => schedulers.items.length + hosts.items.length === 0}
          empty="Nothing has joined this cluster yet."
          render={([schedulers, hosts]) => (
            <Table id="cluster-members" head={["Host", "Role", "Address", "State", "Seen"]}>
              {[
                ...schedulers.items.map((s) => ({ key: `s${s.id}`, host: s.host_name, role: "scheduler", ip: s.ip, port: s.port, state: s.state, seen: s.last_keep_alive_at })),
                ...hosts.items.map((p) => ({ key: `p${p.id}`, host: p.host_name, role: p.type === "normal" ? "peer" : "seed peer", ip: p.ip, port: p.port, state: p.state, seen: p.updated_at })),
              ].map((m) => (
                <tr key={m.key}>
                  <td>{m.host}</td>
                  <td>{m.role}</td>
                  <Address ip={m.ip} port={m.port} />
                  <StateCell state={m.state} />
                  <td>{ago(m.seen)}</td>
                </tr>
              ))}
            </Table>
          )}
        />
      </section>
    </>
  );
}

function ConfigForm({ cluster, onSaved }: { cluster: Cluster; onSaved: () => void }) {
  const [values, setValues] = useState(() => valuesOf(cluster));
  const [saved, setSaved] = useState(false);
  const action = useAction();
  useEffect(() => setValues(valuesOf(cluster)), [cluster]);

  const submit = async (e: Event) => {
    e.preventDefault();
    setSaved(false);
    const body: Record<Section, Record<string, unknown>> = {
      scheduler_cluster_config: { ...cluster.scheduler_cluster_config },
      peer_cluster_config: { ...cluster.peer_cluster_config },
      seed_peer_cluster_config: { ...cluster.seed_peer_cluster_config },
    };
    for (const l of LIMITS) {
      const v = (values[fieldName(l)] ?? "").trim();
      if (v === "") delete body[l.section][l.key];
      else body[l.section][l.key] = Number(v);
    }
    const updated = await action.run(() => api<Cluster>("PATCH", `/api/v1/clusters/${cluster.id}`, body));
    if (!updated) return;
    setSaved(true);
    onSaved();
  };

  return (
    <form class="card form-grid" onSubmit={(e) => void submit(e)} aria-labelledby="config-title" id="cluster-config">
      <h2 id="config-title">Limits</h2>
      {LIMITS.map((l) => (
        <label key={fieldName(l)}>
          {l.label}
          <input
            name={fieldName(l)}
            type="number"
            inputMode="numeric"
            step={1}
            min={l.min}
            max={l.max}
            value={values[fieldName(l)] ?? ""}
            onInput={(e) => {
              const v = e.currentTarget.value;
              setValues((old) => ({ ...old, [fieldName(l)]: v }));
            }}
            aria-invalid={action.field === `body.${fieldName(l)}`}
          />
          <span class="hint">
            {l.help} ({l.min}–{l.max})
          </span>
        </label>
      ))}
      <p class="hint wide">
        Saved on the manager, which hands them to the components that ask for their cluster's configuration (Dragonfly's scheduler and dfdaemon through GetScheduler and ListSchedulers).
      </p>
      <ErrorNote error={action.error} />
      {saved && (
        <p class="notice" role="status">
          Saved.
        </p>
      )}
      <div class="actions wide">
        <button type="submit" class="primary" disabled={action.busy}>
          Save limits
        </button>
      </div>
    </form>
  );
}
