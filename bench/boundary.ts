// Cost of one call across the N-API boundary against one plain JS call: the floor under
// every coarse native call, reported so that a binding change that makes it heavier shows.
import { noop } from "../src/native/index.js";
import { durationResult, interleave, opsPerSecondSync } from "./lib/measure.js";
import type { BenchSuite } from "./lib/types.js";

function jsNoop(x: number): number {
  return x;
}

const suite: BenchSuite = {
  suite: "native",
  benchmarks: [
    {
      name: "boundary-noop",
      run: async (ctx) => {
        let sink = 0;
        const seconds = ctx.short ? 0.2 : 1;
        const m = await interleave(
          ctx.short ? 3 : 5,
          () => opsPerSecondSync(() => (sink += noop(1)), seconds),
          () => opsPerSecondSync(() => (sink += jsNoop(1)), seconds),
        );
        // Reported as ns per call; the ratio (JS time / addon time) is expected to be far below 1.
        return durationResult("boundary-noop", "ns/call", 1e9 / m.ours, 1e9 / m.baseline, "js-function-call", { sink: sink > 0 });
      },
    },
  ],
};

export default suite;
