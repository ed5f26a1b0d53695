// One job as a table row: link, type, what it works on, (clusters,) state, age.
import { ago, jobTarget } from "../format.js";
import { Link } from "../router.js";
import type { Job } from "../types.js";
import { StateCell } from "./state.js";

export function JobRow({ job, clusters = false }: { job: Job; clusters?: boolean }) {
  return (
    <tr data-job={job.id}>
      <td>
        <Link href={`/jobs/${job.id}`}>#{job.id}</Link>
      </td>
      <td>{job.type}</td>
      <td class="wrap">{jobTarget(job.args)}</td>
      {clusters && <td>{job.scheduler_clusters.map((c) => c.name).join(", ")}</td>}
      <StateCell state={job.state} />
      <td>{ago(job.created_at)}</td>
    </tr>
  );
}
