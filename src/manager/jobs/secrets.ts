// Job credentials kept out of the database. The manager has no key to encrypt them at rest
// with (its JWT signing key lives in the same database, so it would protect nothing), so the
// secrets of a preheat job (object storage keys, HDFS delegation token, hub token) live only in the memory of the manager that accepted
// the job. That manager leases the job at creation and keeps renewing the lease while it holds
// the secrets, so no other manager sharing the database claims it first; if it dies, the
// lease runs out and whichever manager claims the job fails it with a clear reason (the job
// must be created again) rather than running it without credentials.
import { randomUUID } from "node:crypto";
import type { PreheatSecrets } from "./source-args.js";

export const DEFAULT_JOB_LEASE_MS = 60_000;

interface Held {
  secrets: PreheatSecrets;
  /** Claimed by this manager's runner: its lease is renewed by the run itself. */
  started: boolean;
}

export class JobSecrets {
  private readonly held = new Map<number, Held>();

  constructor(
    /** This manager's lease owner name (the job runner's). */
    readonly owner = `manager-${randomUUID()}`,
    readonly leaseMs = DEFAULT_JOB_LEASE_MS,
  ) {}

  hold(jobId: number, secrets: PreheatSecrets): void {
    this.held.set(jobId, { secrets, started: false });
  }

  /** The secrets of a job this manager accepted; marks it started. */
  take(jobId: number): PreheatSecrets | undefined {
    const h = this.held.get(jobId);
    if (h) h.started = true;
    return h?.secrets;
  }

  /** Forgets a job's secrets (it finished, or its row was never written). */
  drop(jobId: number): void {
    this.held.delete(jobId);
  }

  /** Jobs whose secrets are held here and that this manager has not started yet. */
  waiting(): number[] {
    return [...this.held].filter(([, h]) => !h.started).map(([id]) => id);
  }
}
