// dfdaemon's Prometheus metrics under Dragonfly's `dragonfly_client_*` names, so existing
// dashboards keep working.
import { Counter, Gauge, type Registry } from "prom-client";
import { VERSION } from "../common/version.js";

export interface DaemonMetrics {
  downloadTaskTotal: Counter<"type" | "tag" | "app" | "priority">;
  downloadTaskFailureTotal: Counter<"type" | "tag" | "app" | "priority">;
  concurrentDownloadTask: Gauge<"type">;
  downloadTraffic: Counter<"type" | "task_type">;
  uploadTraffic: Counter<"task_type">;
  backendRequestTotal: Counter<"scheme" | "method">;
  backendRequestFailureTotal: Counter<"scheme" | "method">;
  diskSpaceTotal: Gauge;
  diskUsageSpaceTotal: Gauge;
  /** Ours: parents dropped for a task, by why: "corrupt" (a piece failed its digest) or "stalled". */
  badParentTotal: Counter<"reason">;
  /** Ours: finished pieces the background scrub re-read, by verdict: "ok" or "corrupt" (storage/scrub.ts). */
  scrubPieceTotal: Counter<"result">;
}

export function daemonMetrics(registry: Registry): DaemonMetrics {
  const r = [registry];
  new Gauge({ name: "dragonfly_client_version", help: "Version info of the client.", labelNames: ["git_version", "git_commit", "platform", "build_time"], registers: r }).set(
    { git_version: VERSION, git_commit: "", platform: `${process.platform}/${process.arch}`, build_time: "" },
    1,
  );
  return {
    downloadTaskTotal: new Counter({ name: "dragonfly_client_download_task_total", help: "Counter of the number of the download task.", labelNames: ["type", "tag", "app", "priority"], registers: r }),
    downloadTaskFailureTotal: new Counter({ name: "dragonfly_client_download_task_failure_total", help: "Counter of the number of failed of the download task.", labelNames: ["type", "tag", "app", "priority"], registers: r }),
    concurrentDownloadTask: new Gauge({ name: "dragonfly_client_concurrent_download_task_total", help: "Gauge of the number of concurrent of the download task.", labelNames: ["type"], registers: r }),
    downloadTraffic: new Counter({ name: "dragonfly_client_download_traffic", help: "Counter of the number of the download traffic.", labelNames: ["type", "task_type"], registers: r }),
    uploadTraffic: new Counter({ name: "dragonfly_client_upload_traffic", help: "Counter of the number of the upload traffic.", labelNames: ["task_type"], registers: r }),
    backendRequestTotal: new Counter({ name: "dragonfly_client_backend_request_total", help: "Counter of the number of the backend request.", labelNames: ["scheme", "method"], registers: r }),
    backendRequestFailureTotal: new Counter({ name: "dragonfly_client_backend_request_failure_total", help: "Counter of the number of failed of the backend request.", labelNames: ["scheme", "method"], registers: r }),
    diskSpaceTotal: new Gauge({ name: "dragonfly_client_disk_space_total", help: "Gauge of the disk space.", registers: r }),
    diskUsageSpaceTotal: new Gauge({ name: "dragonfly_client_disk_usage_space_total", help: "Gauge of the disk usage space.", registers: r }),
    badParentTotal: new Counter({ name: "dragonfly_client_bad_parent_total", help: "Counter of parents dropped for a task, by reason (corrupt: a piece failed its digest; stalled).", labelNames: ["reason"], registers: r }),
    scrubPieceTotal: new Counter({ name: "dragonfly_client_scrub_piece_total", help: "Counter of finished pieces re-verified by the background scrub, by result (ok, corrupt).", labelNames: ["result"], registers: r }),
  };
}
