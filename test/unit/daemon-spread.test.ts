// PieceSpreader (the seed peer's super-seeding): a fresh piece goes to one SyncPieces child at a
// time, the children taking turns; the others hear of it when the hold ends or its holder left.
import { describe, expect, it } from "vitest";
import { PieceSpreader, type Subscriber } from "../../src/daemon/upload/spread.js";

const TASK = "t".repeat(64);

function child(wanted: number[]): Subscriber {
  const want = new Set(wanted);
  return { wants: (n) => want.has(n) };
}

describe("PieceSpreader", () => {
  it("offers each fresh piece to one child in turn and to the rest after the hold", () => {
    let now = 1000;
    const s = new PieceSpreader(5000, () => now);
    const a = child([0, 1]);
    const b = child([0, 1]);
    s.subscribe(TASK, a);
    s.subscribe(TASK, b);
    s.landed(TASK, 0);
    s.landed(TASK, 1);
    expect([s.delay(TASK, 0, a), s.delay(TASK, 0, b)]).toEqual([0, 5000]);
    expect([s.delay(TASK, 1, a), s.delay(TASK, 1, b)]).toEqual([5000, 0]);
    now += 2000;
    expect(s.delay(TASK, 0, b)).toBe(3000);
    now += 3000;
    expect(s.delay(TASK, 0, b)).toBe(0);
  });

  it("holds nothing for a single child, for pieces landed before anyone subscribed, or with no hold", () => {
    const s = new PieceSpreader(5000, () => 0);
    const a = child([0, 1]);
    s.landed(TASK, 0);
    s.subscribe(TASK, a);
    s.subscribe(TASK, child([7]));
    s.landed(TASK, 1);
    expect(s.delay(TASK, 0, a)).toBe(0);
    expect(s.delay(TASK, 1, a)).toBe(0);

    const off = new PieceSpreader(0, () => 0);
    const x = child([0]);
    const y = child([0]);
    off.subscribe(TASK, x);
    off.subscribe(TASK, y);
    off.landed(TASK, 0);
    expect([off.delay(TASK, 0, x), off.delay(TASK, 0, y)]).toEqual([0, 0]);
  });

  it("releases a held piece as soon as the child holding the turn goes away", () => {
    const s = new PieceSpreader(5000, () => 0);
    const a = child([0]);
    const b = child([0]);
    const leaveA = s.subscribe(TASK, a);
    s.subscribe(TASK, b);
    s.landed(TASK, 0);
    expect(s.delay(TASK, 0, b)).toBe(5000);
    leaveA();
    expect(s.delay(TASK, 0, b)).toBe(0);
  });
});
