// Manager metrics under Dragonfly's names (`dragonfly_manager_*`), one registry per manager.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { createRegistry } from "../common/metrics.js";
import { VERSION } from "../common/version.js";

export class ManagerMetrics {
  readonly registry: Registry;
  readonly requests: Counter<"code" | "method" | "url">;
  readonly requestDuration: Histogram<"code" | "method" | "url">;
  readonly searchSchedulerCluster: Counter<"version" | "commit">;
  readonly searchSchedulerClusterFailure: Counter<"version" | "commit">;
  readonly jobs: Counter<"type" | "state">;
  readonly schedulers: Gauge<"state">;
  /** Source of the schedulers gauge, set once the database is open. */
  schedulerCounts: (() => Promise<Record<string, number>>) | undefined;

  constructor(registry: Registry = createRegistry()) {
    this.registry = registry;
    const r = [registry];
    new Gauge({ name: "dragonfly_manager_version", help: "Version info of the service.", labelNames: ["major", "minor", "git_version", "git_commit", "platform", "build_time", "go_version"], registers: r })
      .labels({ major: VERSION.split(".")[0] ?? "", minor: VERSION.split(".")[1] ?? "", git_version: VERSION, git_commit: "", platform: `${process.platform}/${process.arch}`, build_time: "", go_version: "" })
      .set(1);
    this.requests = new Counter({ name: "dragonfly_manager_requests_total", help: "How many HTTP requests processed, partitioned by status code and HTTP method.", labelNames: ["code", "method", "url"], registers: r });
    this.requestDuration = new Histogram({ name: "dragonfly_manager_request_duration_seconds", help: "The HTTP request latencies in seconds.", labelNames: ["code", "method", "url"], registers: r });
    this.searchSchedulerCluster = new Counter({ name: "dragonfly_manager_search_scheduler_cluster_total", help: "Counter of the number of searching scheduler cluster.", labelNames: ["version", "commit"], registers: r });
    this.searchSchedulerClusterFailure = new Counter({ name: "dragonfly_manager_search_scheduler_cluster_failure_total", help: "Counter of the number of failed of searching scheduler cluster.", labelNames: ["version", "commit"], registers: r });
    this.jobs = new Counter({ name: "dragonfly_manager_jobs_total", help: "Counter of finished jobs by type and final state.", labelNames: ["type", "state"], registers: r });
    const source = () => this.schedulerCounts;
    this.schedulers = new Gauge({
      name: "dragonfly_manager_schedulers",
      help: "Schedulers known to the manager by state.",
      labelNames: ["state"],
      registers: r,
      // Counted from the database at scrape time.
      async collect() {
        const counts = await source()?.();
        if (!counts) return;
        this.reset();
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
  }
}
