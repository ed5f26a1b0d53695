import { describe, expect, it } from "vitest";
import { pieceSpread } from "../../bench/lib/spread.js";
import type { ProgressSample } from "../e2e/harness/swarm.js";

const MiB = 1 << 20;
const landed = (t: number, bytes: number, number: number, costMs: number): ProgressSample => ({ t, bytes, piece: { number, parentId: "p", costMs } });

describe("pieceSpread (swarm bench breakdown)", () => {
  it("splits a swarm's time into when pieces entered it and how long they took to reach every peer", () => {
    // Piece 0 reaches peer A at 1 s and peer B at 3 s; piece 1 reaches B at 2 s and A at 6 s.
    const a = [{ t: 0, bytes: 0 }, landed(1000, 4 * MiB, 0, 400), landed(6000, 8 * MiB, 1, 3000)];
    const b = [{ t: 0, bytes: 0 }, landed(2000, 4 * MiB, 1, 500), landed(3000, 8 * MiB, 0, 1000)];
    const s = pieceSpread([a, b], 4 * MiB);
    expect(s.pieces).toBe(2);
    expect(s.lastFirstCopyS).toBe(2);
    expect(s.spreadS).toEqual({ p50: 2, p90: 4, max: 4 });
    expect(s.pieceCostP50S).toBe(0.5);
    // A: 4 MiB in the 5 s after its first piece, a fifth of a 4 MiB/s link; B: 4 MiB in 1 s.
    expect(s.receiveUtilization).toEqual({ mean: 0.6, min: 0.2 });
  });

  it("reports nothing landed as zeros instead of failing", () => {
    const s = pieceSpread([[{ t: 0, bytes: 0 }]], 4 * MiB);
    expect(s).toEqual({ pieces: 0, lastFirstCopyS: 0, spreadS: { p50: 0, p90: 0, max: 0 }, pieceCostP50S: 0, receiveUtilization: { mean: 0, min: 0 } });
  });
});
