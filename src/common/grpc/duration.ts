// google.protobuf.Duration ⇄ milliseconds, for every component that reads or writes one
// (the scheduler's costs and intervals, the daemon's download and listing timeouts).
import type { Duration } from "../../gen/google/protobuf/duration.js";

export function msToDuration(ms: number): Duration {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** An absent Duration is 0 ms (proto3's default). */
export function durationToMs(d: Duration | undefined): number {
  return d ? d.seconds * 1000 + d.nanos / 1e6 : 0;
}
