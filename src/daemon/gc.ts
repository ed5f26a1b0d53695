// Storage GC: tasks idle past their TTL go, and when our bytes pass the high watermark of the
// capacity (diskThreshold, else the filesystem size) tasks go in eviction order until we are
// under the low watermark. Only our own task bytes are counted, so other data on a shared disk
// never makes us evict the cache. A download that finds the disk full (ENOSPC) asks `makeRoom`
// for its bytes, which evicts in the same order. Never evicted: a task still downloading, or
// one children are downloading from us.
import { statfs } from "node:fs/promises";
import type { Logger } from "../common/logger.js";
import { runEvery, type Periodic } from "../common/periodic.js";
import type { DaemonMetrics } from "./metrics.js";
import type { Storage } from "./storage/storage.js";
import type { TaskStore } from "./storage/types.js";
import { errorMessage } from "../common/errors.js";

export interface GcPolicy {
  taskTtlMs: number;
  /** Logical capacity in bytes; 0 = the size of the filesystem holding the tasks. */
  diskThresholdBytes: number;
  highPercent: number;
  lowPercent: number;
  /** Where to measure the filesystem when no threshold is set. */
  storageDir?: string;
}

/** What GC must leave alone (TaskManager): downloads in progress, tasks being uploaded. */
export interface TaskUsage {
  isInUse(taskId: string): boolean;
}

/**
 * The tasks GC may evict, first to go first: failed tasks kept for a resume before completed
 * ones (a resume is worth less than a cache hit), each least recently used first. A task in
 * use, or whose record still says running (a crash left it; it resumes on its next request),
 * is not listed.
 */
export function evictionOrder(tasks: readonly TaskStore[], usage: TaskUsage): TaskStore[] {
  const rank = (t: TaskStore) => (t.meta.state === "failed" ? 0 : 1);
  return tasks.filter((t) => t.meta.state !== "running" && !usage.isInUse(t.id)).sort((a, b) => rank(a) - rank(b) || a.meta.updatedAt - b.meta.updatedAt);
}

export async function runGc(storage: Storage, usage: TaskUsage, policy: GcPolicy, log: Logger, metrics?: DaemonMetrics, now = Date.now()): Promise<void> {
  for (const t of evictionOrder(storage.list(), usage)) {
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
  for (const t of evictionOrder(storage.list(), usage)) {
    if (used <= target) break;
    log.info({ taskId: t.id, bytes: t.meta.contentLength }, "gc: evicting task over the disk high watermark");
    used -= t.meta.contentLength;
    await storage.delete(t.id);
  }
  metrics?.diskUsageSpaceTotal.set(storage.usedBytes());
}

/** Bytes an unprivileged writer may still allocate on the filesystem holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const fs = await statfs(dir);
  return fs.bavail * fs.bsize;
}

export interface Room {
  /** Free bytes on the filesystem after the evictions. */
  free: number;
  /** Ids of the tasks evicted for it. */
  evicted: string[];
  /** Whether `free` covers the bytes asked for. */
  enough: boolean;
}

/**
 * Makes `bytes` free on the filesystem of the `tier` root for a download that hit ENOSPC, by
 * evicting that tier's tasks in eviction order (never `forTask` itself). When evicting every
 * candidate could not make the room (a task larger than the disk), nothing is evicted: the
 * download fails anyway, and emptying the cache would not have helped it.
 */
export async function makeRoom(storage: Storage, usage: TaskUsage, tier: "disk" | "memory", bytes: number, forTask: string, log: Logger, measure: (dir: string) => Promise<number> = freeBytes): Promise<Room> {
  const dir = storage.rootFor(tier);
  let free = await measure(dir);
  const evicted: string[] = [];
  if (free >= bytes) return { free, evicted, enough: true };
  const candidates = evictionOrder(storage.list(), usage).filter((t) => t.meta.tier === tier && t.id !== forTask);
  // Task bytes are preallocated, so a task gives back about its content length.
  const reclaimable = candidates.reduce((s, t) => s + t.meta.contentLength, 0);
  if (free + reclaimable < bytes) return { free, evicted, enough: false };
  for (const t of candidates) {
    if (free >= bytes) break;
    log.info({ taskId: t.id, bytes: t.meta.contentLength, forTask, needed: bytes, free }, "gc: evicting task to make room for a download (no space left)");
    await storage.delete(t.id);
    evicted.push(t.id);
    free = await measure(dir);
  }
  return { free, evicted, enough: free >= bytes };
}

export function startGc(storage: Storage, usage: TaskUsage, policy: GcPolicy, intervalMs: number, log: Logger, metrics?: DaemonMetrics): Periodic {
  return runEvery(
    intervalMs,
    () => runGc(storage, usage, policy, log, metrics),
    (e: unknown) => log.warn({ err: errorMessage(e) }, "gc failed"),
  );
}
