// Cost of one call across the N-API boundary against one plain JS call: the floor under
// every coarse native call, reported so that a binding change that makes it heavier shows.
// The addon carries no bench-only export, so the call measured is its cheapest real one:
// defaultPieceServePath takes no argument and returns a short static string (the old
// `noop(u32) -> u32` measured the bare crossing; this adds one small string to it). The
// name stays "boundary-noop" so the series goes on.
import { defaultPieceServePath } from "../src/native/index.js";
import { durationResult, interleave, opsPerSecondSync } from "./lib/measure.js";
import type { BenchSuite } from "./lib/types.js";

const SERVE_PATH = "sendfile";

// Same shape on the JS side: no argument, a short string back.
function jsServePath(): string {
  return SERVE_PATH;
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
          () => opsPerSecondSync(() => (sink += defaultPieceServePath().length), seconds),
          () => opsPerSecondSync(() => (sink += jsServePath().length), seconds),
        );
        // Reported as ns per call; the ratio (JS time / addon time) is expected to be far below 1.
        return durationResult("boundary-noop", "ns/call", 1e9 / m.ours, 1e9 / m.baseline, "js-function-call", {
          call: "defaultPieceServePath()",
          sink: sink > 0,
        });
      },
    },
  ],
};

export default suite;
