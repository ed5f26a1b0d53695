// BackToSourceWidth: back-to-source adds ranges only while pieces keep landing about as fast
// as a lone range's, so a link one range fills gets pieces one at a time, in order, while an
// origin that caps each connection, or a fast one, gets full width.
import { describe, expect, it } from "vitest";
import { BackToSourceWidth } from "../../src/daemon/task/width.js";

/** Lands pieces as an origin whose piece time at width w is `ms(w)` would. */
function simulate(max: number, ms: (w: number) => number, pieces = 64): number {
  const width = new BackToSourceWidth(max);
  for (let i = 0; i < pieces; i++) width.landed(ms(width.target));
  return width.target;
}

describe("BackToSourceWidth", () => {
  it("stays narrow on a link one range fills (piece time grows with the width)", () => {
    // 4 MiB at 100 Mbit/s: 335 ms alone, split w ways.
    expect(simulate(8, (w) => 335 * w)).toBe(2);
  });

  it("widens to the maximum when each range has its own pace (an origin capping connections)", () => {
    expect(simulate(8, () => 800)).toBe(8);
  });

  it("widens to the maximum when pieces land quickly anyway (a fast origin)", () => {
    expect(simulate(8, (w) => 4 * w)).toBe(8);
    expect(simulate(1, () => 800)).toBe(1);
  });
});
