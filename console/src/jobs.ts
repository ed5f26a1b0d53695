// Running a job to its end from a page: create it, then read it until it is final.
import { api } from "./api.js";
import { FINAL_JOB_STATES, type Job } from "./types.js";

const POLL_MS = 500;

export async function runJob(body: { type: string; args?: Record<string, unknown> }): Promise<Job> {
  const created = await api<Job>("POST", "/api/v1/jobs", body);
  for (;;) {
    const job = await api<Job>("GET", `/api/v1/jobs/${created.id}`);
    if (FINAL_JOB_STATES.includes(job.state)) return job;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** The clusters' errors of a failed job, for one line of text. */
export function jobErrors(job: Job): string {
  return job.result.job_states?.map((s) => s.error).filter(Boolean).join("; ") || "no reason given";
}
