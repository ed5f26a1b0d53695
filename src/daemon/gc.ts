// Storage GC: tasks idle past their TTL go, and when our bytes pass the high watermark of the
// capacity (diskThreshold, else the filesystem size) the least recently used finished or failed
// tasks go until we are under the low watermark. Only our own task bytes are counted, so other
// data on a shared disk never makes us evict the cache.
import { statfs } from "node:fs/promises";
import type { Logger } from "../common/logger.js";
import { runEvery, type Periodic } from "../common/periodic.js";
import type { DaemonMetrics } from "./metrics.js";
import type { Storage } from "./storage/storage.js";
import type { TaskManager } from "./task/manager.js";

export interface GcPolicy {
  taskTtlMs: number;
  /** Logical capacity in bytes; 0 = the size of the filesystem holding the tasks. */
  diskThresholdBytes: number;
  highPercent: number;
  lowPercent: number;
  /** Where to measure the filesystem when no threshold is set. */
  storageDir?: string;
}

export async function runGc(storage: Storage, tasks: TaskManager, policy: GcPolicy, log: Logger, metrics?: DaemonMetrics, now = Date.now()): Promise<void> {
  const evictable = () => storage.list().filter((t) => !tasks.isRunning(t.id) && t.meta.state !== "running");
  for (const t of evictable()) {
    if (now - t.meta.updatedAt > policy.taskTtlMs) {
      log.info({ taskId: t.id }, "gc: task TTL expired");
      await storage.delete(t.id);
    }
  }
  let capacity = policy.diskThresholdBytes;
  if (capacity <= 0 && policy.storageDir) {
    const fs = await statfs(policy.storageDir).catch(() => undefined);
    capacity = fs ? fs.blocks * fs.bsize : 0;
  }
  let used = storage.usedBytes();
  metrics?.diskSpaceTotal.set(capacity);
  metrics?.diskUsageSpaceTotal.set(used);
  if (capacity <= 0 || (used / capacity) * 100 < policy.highPercent) return;
  const target = (capacity * policy.lowPercent) / 100;
  for (const t of evictable().sort((a, b) => a.meta.updatedAt - b.meta.updatedAt)) {
    if (used <= target) break;
    log.info({ taskId: t.id, bytes: t.meta.contentLength }, "gc: evicting task over the disk high watermark");
    used -= t.meta.contentLength;
    await storage.delete(t.id);
  }
  metrics?.diskUsageSpaceTotal.set(storage.usedBytes());
}

export function startGc(storage: Storage, tasks: TaskManager, policy: GcPolicy, intervalMs: number, log: Logger, metrics?: DaemonMetrics): Periodic {
  return runEvery(
    intervalMs,
    () => runGc(storage, tasks, policy, log, metrics),
    (e: unknown) => log.warn({ err: e instanceof Error ? e.message : String(e) }, "gc failed"),
  );
}
