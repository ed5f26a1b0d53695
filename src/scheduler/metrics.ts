// Prometheus metrics under Dragonfly's names (dragonfly_scheduler_*, scheduler/metrics/
// metrics.go) plus the A/B comparison our evaluators add. One instance per registry, so several
// schedulers in one test process do not collide.
import { Counter, Gauge, Summary, type Registry } from "prom-client";
import { VERSION } from "../common/version.js";

const P = "dragonfly_scheduler_";
const PEER_LABELS = ["priority", "task_type", "host_type"] as const;
const PIECE_LABELS = ["traffic_type", "task_type", "host_type"] as const;
const HOST_LABELS = ["os", "platform", "platform_family", "platform_version", "kernel_version", "git_version", "git_commit", "go_version", "build_platform"] as const;
const OBJECTIVES = { percentiles: [0.5, 0.9, 0.95, 0.99] };

export function createSchedulerMetrics(registry: Registry) {
  const registers = [registry];
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) => new Counter<L>({ name: P + name, help, labelNames, registers });
  const m = {
    announcePeer: counter("announce_peer_total", "Counter of the number of the announcing peer."),
    announcePeerFailure: counter("announce_peer_failure_total", "Counter of the number of failed of the announcing peer."),
    statPeer: counter("stat_peer_total", "Counter of the number of the stat peer."),
    statPeerFailure: counter("stat_peer_failure_total", "Counter of the number of failed of the stat peer."),
    leavePeer: counter("leave_peer_total", "Counter of the number of the leaving peer."),
    leavePeerFailure: counter("leave_peer_failure_total", "Counter of the number of failed of the leaving peer."),
    registerPeer: counter("register_peer_total", "Counter of the number of the register peer.", PEER_LABELS),
    registerPeerFailure: counter("register_peer_failure_total", "Counter of the number of failed of the register peer.", PEER_LABELS),
    downloadPeerStarted: counter("download_peer_started_total", "Counter of the number of the download peer started.", PEER_LABELS),
    downloadPeerStartedFailure: counter("download_peer_started_failure_total", "Counter of the number of failed of the download peer started.", PEER_LABELS),
    downloadPeerBackToSourceStarted: counter("download_peer_back_to_source_started_total", "Counter of the number of the download peer back-to-source started.", PEER_LABELS),
    downloadPeerBackToSourceStartedFailure: counter("download_peer_back_to_source_started_failure_total", "Counter of the number of failed of the download peer back-to-source started.", PEER_LABELS),
    downloadPeer: counter("download_peer_finished_total", "Counter of the number of the download peer.", PEER_LABELS),
    downloadPeerFailure: counter("download_peer_finished_failure_total", "Counter of the number of failed of the download peer.", PEER_LABELS),
    downloadPeerBackToSourceFailure: counter("download_peer_back_to_source_finished_failure_total", "Counter of the number of failed of the download peer back-to-source.", PEER_LABELS),
    downloadPiece: counter("download_piece_finished_total", "Counter of the number of the download piece.", PIECE_LABELS),
    downloadPieceFailure: counter("download_piece_finished_failure_total", "Counter of the number of failed of the download piece.", PIECE_LABELS),
    downloadPieceBackToSourceFailure: counter("download_piece_back_to_source_finished_failure_total", "Counter of the number of failed of the download piece back-to-source.", PIECE_LABELS),
    statTask: counter("stat_task_total", "Counter of the number of the stat task."),
    statTaskFailure: counter("stat_task_failure_total", "Counter of the number of failed of the stat task."),
    leaveTask: counter("leave_task_total", "Counter of the number of the leaving task."),
    leaveTaskFailure: counter("leave_task_failure_total", "Counter of the number of failed of the leaving task."),
    announceHost: counter("announce_host_total", "Counter of the number of the announce host.", HOST_LABELS),
    announceHostFailure: counter("announce_host_failure_total", "Counter of the number of failed of the announce host.", HOST_LABELS),
    listHosts: counter("list_hosts_total", "Counter of the number of the list hosts."),
    listHostsFailure: counter("list_hosts_failure_total", "Counter of the number of failed of the list hosts."),
    leaveHost: counter("leave_host_total", "Counter of the number of the leaving host."),
    leaveHostFailure: counter("leave_host_failure_total", "Counter of the number of failed of the leaving host."),
    traffic: counter("traffic", "Counter of the number of traffic.", ["type", "task_type", "host_type"]),
    hostTraffic: counter("host_traffic", "Counter of the number of per host traffic.", ["type", "task_type", "host_type", "host_id", "host_ip", "host_name"]),
    preheatImage: counter("preheat_image_total", "Counter of the number of the preheat image."),
    preheatImageFailure: counter("preheat_image_failure_total", "Counter of the number of failed of the preheat image."),
    statImage: counter("stat_image_total", "Counter of the number of the stat image."),
    statImageFailure: counter("stat_image_failure_total", "Counter of the number of failed of the stat image."),
    preheatFile: counter("preheat_file_total", "Counter of the number of the preheat file."),
    preheatFileFailure: counter("preheat_file_failure_total", "Counter of the number of failed of the preheat file."),
    statFile: counter("stat_file_total", "Counter of the number of the stat file."),
    statFileFailure: counter("stat_file_failure_total", "Counter of the number of failed of the stat file."),
    downloadPeerDuration: new Summary({ name: `${P}download_peer_duration_milliseconds`, help: "Summary of the time each peer downloading.", labelNames: ["task_size_level"], ...OBJECTIVES, registers }),
    concurrentSchedule: new Gauge({ name: `${P}concurrent_schedule_total`, help: "Gauge of the number of concurrent of the scheduling.", registers }),
    scheduleDuration: new Summary({ name: `${P}schedule_duration_milliseconds`, help: "Summary of the time each scheduling.", ...OBJECTIVES, registers }),
    /** Ours: download cost per A/B arm, so evaluators can be compared on live traffic. */
    abDownloadPeerDuration: new Summary({
      name: `${P}ab_download_peer_duration_milliseconds`,
      help: "Summary of peer download time per A/B arm and evaluator.",
      labelNames: ["arm", "evaluator", "task_size_level"],
      ...OBJECTIVES,
      registers,
    }),
    /** Ours: back-to-source piece reports whose digest disagrees with the piece's first report (kept; see resource/piece-digests.ts). */
    pieceDigestConflict: counter("piece_digest_conflict_total", "Counter of back-to-source piece reports whose digest disagrees with the first report of the piece.", ["task_type", "host_type"]),
    seedPeerTrigger: counter("seed_peer_trigger_total", "Counter of seed peer download triggers by result.", ["result"]),
    version: new Gauge({ name: `${P}version`, help: "Version info of the service.", labelNames: ["major", "minor", "git_version", "git_commit", "platform", "build_time", "go_version", "go_tags", "go_gcflags"], registers }),
  };
  const [major = "0", minor = "0"] = VERSION.split(".");
  m.version.set({ major, minor, git_version: VERSION, git_commit: "", platform: `${process.platform}/${process.arch}`, build_time: "", go_version: "", go_tags: "", go_gcflags: "" }, 1);
  return m;
}

export type SchedulerMetrics = ReturnType<typeof createSchedulerMetrics>;

// Shared with the daemon, whose client metrics use the same bands.
export { taskSizeLevel } from "../common/metrics.js";
