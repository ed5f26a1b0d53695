// dfdaemon's Prometheus metrics under the names and label sets of Dragonfly's client
// (dragonfly-client-metric, `dragonfly_client_*`), so dashboards written for Dragonfly keep
// working. Each is counted where the thing happens: download tasks in TaskManager.download,
// download traffic and piece durations where a piece lands, backend requests around each origin request
// (backend/instrumented.ts), upload traffic in the native piece server (read at scrape time).
// What we leave out of Dragonfly's set, and why: deploy/grafana/README.md.
import { Counter, Gauge, Histogram, exponentialBuckets, type Registry } from "prom-client";
import { VERSION } from "../common/version.js";
import type { Download } from "../gen/common/v2/common.js";

const TASK_LABELS = ["type", "tag", "app", "priority"] as const;
type TaskLabel = (typeof TASK_LABELS)[number];
/** Dragonfly's duration buckets: 1 ms doubling 24 times (to about 2.3 hours). */
const MS_BUCKETS = exponentialBuckets(1, 2, 24);

/** Dragonfly's TrafficType names, the `type` label of download_traffic. */
export type TrafficTypeName = "BACK_TO_SOURCE" | "REMOTE_PEER" | "LOCAL_PEER";

/** Dragonfly's labels of a download task: its TaskType and Priority as numbers, tag, application. */
export function downloadTaskLabels(d: Download): Record<TaskLabel, string> {
  return { type: String(d.type), tag: d.tag ?? "", app: d.application ?? "", priority: String(d.priority) };
}

export interface BackendMetrics {
  backendRequestTotal: Counter<"scheme" | "method">;
  backendRequestFailureTotal: Counter<"scheme" | "method">;
  backendRequestDuration: Histogram<"scheme" | "method">;
}

export interface DaemonMetrics extends BackendMetrics {
  downloadTaskTotal: Counter<TaskLabel>;
  downloadTaskFailureTotal: Counter<TaskLabel>;
  concurrentDownloadTask: Gauge<TaskLabel>;
  /** Milliseconds from the request to the task's last byte, by task type and size level. */
  downloadTaskDuration: Histogram<"task_type" | "task_size_level">;
  /** Bytes of pieces that landed (or were read from local storage for a requester), by Dragonfly's TrafficType name. */
  downloadTraffic: Counter<"type">;
  /** Milliseconds from a piece's request (to a parent or the origin) to its bytes stored, by TrafficType name. */
  downloadPieceDuration: Histogram<"type">;
  diskSpaceTotal: Gauge;
  diskUsageSpaceTotal: Gauge;
  /** Ours: parents dropped for a task, by why: "corrupt" (a piece failed its digest) or "stalled". */
  badParentTotal: Counter<"reason">;
  /** Ours: finished pieces the background scrub re-read, by verdict: "ok" or "corrupt" (storage/scrub.ts). */
  scrubPieceTotal: Counter<"result">;
  /**
   * Where upload_traffic is read from: the piece server counts the bytes it sends children
   * (TCP and QUIC) in Rust; the counter exports that count at each scrape.
   */
  countUploadsFrom(bytesServed: () => number): void;
}

export function daemonMetrics(registry: Registry): DaemonMetrics {
  const r = [registry];
  new Gauge({ name: "dragonfly_client_version", help: "Version info of the client.", labelNames: ["git_version", "git_commit", "platform", "build_time"], registers: r }).set(
    { git_version: VERSION, git_commit: "", platform: `${process.platform}/${process.arch}`, build_time: "" },
    1,
  );
  let bytesServed = () => 0;
  new Counter({
    name: "dragonfly_client_upload_traffic",
    help: "Counter of the number of the upload traffic.",
    registers: r,
    collect() {
      // A counter cannot be set: reset and add the native server's running total.
      this.reset();
      this.inc(bytesServed());
    },
  });
  return {
    downloadTaskTotal: new Counter({ name: "dragonfly_client_download_task_total", help: "Counter of the number of the download task.", labelNames: TASK_LABELS, registers: r }),
    downloadTaskFailureTotal: new Counter({ name: "dragonfly_client_download_task_failure_total", help: "Counter of the number of failed of the download task.", labelNames: TASK_LABELS, registers: r }),
    concurrentDownloadTask: new Gauge({ name: "dragonfly_client_concurrent_download_task_total", help: "Gauge of the number of concurrent of the download task.", labelNames: TASK_LABELS, registers: r }),
    downloadTaskDuration: new Histogram({ name: "dragonfly_client_download_task_duration_milliseconds", help: "Histogram of the download task duration.", labelNames: ["task_type", "task_size_level"], buckets: MS_BUCKETS, registers: r }),
    downloadTraffic: new Counter({ name: "dragonfly_client_download_traffic", help: "Counter of the number of the download traffic.", labelNames: ["type"], registers: r }),
    downloadPieceDuration: new Histogram({ name: "dragonfly_client_download_piece_duration_milliseconds", help: "Histogram of the download piece duration.", labelNames: ["type"], buckets: MS_BUCKETS, registers: r }),
    backendRequestTotal: new Counter({ name: "dragonfly_client_backend_request_total", help: "Counter of the number of the backend request.", labelNames: ["scheme", "method"], registers: r }),
    backendRequestFailureTotal: new Counter({ name: "dragonfly_client_backend_request_failure_total", help: "Counter of the number of failed of the backend request.", labelNames: ["scheme", "method"], registers: r }),
    backendRequestDuration: new Histogram({ name: "dragonfly_client_backend_request_duration_milliseconds", help: "Histogram of the backend request duration.", labelNames: ["scheme", "method"], buckets: MS_BUCKETS, registers: r }),
    diskSpaceTotal: new Gauge({ name: "dragonfly_client_disk_space_total", help: "Gauge of the disk space in bytes", registers: r }),
    diskUsageSpaceTotal: new Gauge({ name: "dragonfly_client_disk_usage_space_total", help: "Gauge of the disk usage space in bytes", registers: r }),
    badParentTotal: new Counter({ name: "dragonfly_client_bad_parent_total", help: "Counter of parents dropped for a task, by reason (corrupt: a piece failed its digest; stalled).", labelNames: ["reason"], registers: r }),
    scrubPieceTotal: new Counter({ name: "dragonfly_client_scrub_piece_total", help: "Counter of finished pieces re-verified by the background scrub, by result (ok, corrupt).", labelNames: ["result"], registers: r }),
    countUploadsFrom(f) {
      bytesServed = f;
    },
  };
}
