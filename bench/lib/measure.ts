// Same-run measurement helpers: ours and the baseline alternate round by round so that
// frequency scaling, page cache and noisy neighbours hit both alike; the median round wins.
import type { BenchResult } from "./types.js";

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** Three decimals, for readable JSON reports. */
export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? 0;
}

/** Times `fn` once, in seconds. */
export async function timeOnce(fn: () => unknown): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Runs `fn` repeatedly for at least `minSeconds` and returns operations per second. */
export async function opsPerSecond(fn: () => unknown, minSeconds: number): Promise<number> {
  let ops = 0;
  let batch = 1;
  const t0 = process.hrtime.bigint();
  for (;;) {
    for (let i = 0; i < batch; i++) await fn();
    ops += batch;
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    if (elapsed >= minSeconds) return ops / elapsed;
    batch = Math.min(batch * 2, 1 << 20);
  }
}

/** Synchronous variant for sub-microsecond calls, where awaiting would dominate. */
export function opsPerSecondSync(fn: () => unknown, minSeconds: number): number {
  let ops = 0;
  let batch = 1024;
  const t0 = process.hrtime.bigint();
  for (;;) {
    for (let i = 0; i < batch; i++) fn();
    ops += batch;
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    if (elapsed >= minSeconds) return ops / elapsed;
    batch = Math.min(batch * 2, 1 << 24);
  }
}

/** Alternates two throughput measurements for `rounds` rounds; returns the medians. */
export async function interleave(
  rounds: number,
  ours: () => Promise<number> | number,
  baseline: () => Promise<number> | number,
): Promise<{ ours: number; baseline: number; oursRounds: number[]; baselineRounds: number[] }> {
  const o: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < rounds; i++) {
    // Swap who goes first each round so neither always meets a warm cache.
    if (i % 2 === 0) {
      o.push(await ours());
      b.push(await baseline());
    } else {
      b.push(await baseline());
      o.push(await ours());
    }
  }
  return { ours: median(o), baseline: median(b), oursRounds: o, baselineRounds: b };
}

/** Builds a result for a higher-is-better unit (throughput). */
export function throughputResult(name: string, unit: string, ours: number, baseline: number, baselineName: string, details?: Record<string, unknown>): BenchResult {
  return { name, unit, ours, baseline, baselineName, ratio: baseline > 0 ? ours / baseline : 0, ...(details ? { details } : {}) };
}

/** Builds a result for a lower-is-better unit (duration, latency). */
export function durationResult(name: string, unit: string, ours: number, baseline: number, baselineName: string, details?: Record<string, unknown>): BenchResult {
  return { name, unit, ours, baseline, baselineName, ratio: ours > 0 ? baseline / ours : 0, ...(details ? { details } : {}) };
}
