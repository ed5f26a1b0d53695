// The scheduler's record of the origin's piece digests (issue 21): what back-to-source peers
// report fixes each piece's digest, receivers read it from Task.pieces (StatTask), and the
// peers that fetch from the origin are named in candidate lists.
import { describe, expect, it } from "vitest";
import { TrafficType, type Piece } from "../../src/gen/common/v2/common.js";
import { peerMessage, taskMessage } from "../../src/scheduler/convert.js";
import { MAX_STORED_PIECES, PieceDigests } from "../../src/scheduler/resource/piece-digests.js";
import { addPeer, addTask, BACK_TO_SOURCE, MiB, newResource, SUCCEEDED } from "./scheduler-fixtures.js";

const blake = (n: number, c = "a") => `blake3:${String(n).padStart(2, "0")}${c.repeat(62)}`;

function report(number: number, digest: string): Piece {
  return { number, offset: number * 4 * MiB, length: 4 * MiB, digest, trafficType: TrafficType.BACK_TO_SOURCE, cost: { seconds: 0, nanos: 1e6 }, createdAt: new Date(0), content: Buffer.from("x") };
}

describe("PieceDigests", () => {
  it("keeps the first report of a piece; an equal one agrees, another of the same algorithm conflicts and changes nothing", () => {
    const d = new PieceDigests();
    expect(d.vouch(report(0, blake(0)), 10)).toBe("stored");
    expect(d.vouch(report(0, blake(0).toUpperCase().replace("BLAKE3", "blake3")), 10)).toBe("same");
    expect(d.vouch(report(0, blake(0, "b")), 10)).toBe("conflict");
    expect(d.get(0)?.digest).toBe(blake(0));
    // Stored without the bytes a report may carry.
    expect(d.get(0)?.content).toBeUndefined();
  });

  it("lets a collision-resistant digest replace a crc32 one, never the other way round", () => {
    const d = new PieceDigests();
    expect(d.vouch(report(3, "crc32:907060870"), 10)).toBe("stored");
    expect(d.vouch(report(3, blake(3)), 10)).toBe("upgraded");
    expect(d.vouch(report(3, "crc32:1"), 10)).toBe("kept");
    expect(d.vouch(report(3, `sha256:${"c".repeat(64)}`), 10)).toBe("kept");
    expect(d.get(3)?.digest).toBe(blake(3));
    // A report without a digest says nothing against the one held.
    expect(d.vouch(report(3, ""), 10)).toBe("same");
    expect(d.get(3)?.digest).toBe(blake(3));
  });

  it("lists pieces in number order, bounds a task of unknown length, and forgets everything on clear", () => {
    const d = new PieceDigests();
    for (const n of [2, 0, 1]) d.vouch(report(n, blake(n)), 3);
    expect(d.list().map((p) => p.number)).toEqual([0, 1, 2]);
    d.clear();
    expect(d.size).toBe(0);
    for (let n = 0; n < MAX_STORED_PIECES; n++) d.vouch(report(n, "crc32:1"), -1);
    expect(d.vouch(report(MAX_STORED_PIECES, "crc32:1"), -1)).toBe("dropped");
    expect(d.size).toBe(MAX_STORED_PIECES);
  });
});

describe("vouched digests on the wire", () => {
  it("Task.pieces carries the digests, candidate Peers name the peers that fetch from the origin", () => {
    const { resource, clock } = newResource();
    const task = addTask(resource, "v".repeat(64), 12 * MiB);
    const source = addPeer(resource, "source", task, "h1", BACK_TO_SOURCE);
    source.needBackToSource = true;
    const cached = addPeer(resource, "cached", task, "h2", SUCCEEDED);
    for (const n of [1, 0]) task.pieces.vouch(report(n, blake(n)), task.totalPieceCount);
    expect(taskMessage(task).pieces.map((p) => [p.number, p.digest])).toEqual([
      [0, blake(0)],
      [1, blake(1)],
    ]);
    // Candidate lists leave the task's pieces out (StatTask hands them out).
    expect(peerMessage(source, clock.now()).task?.pieces).toEqual([]);
    expect(peerMessage(source, clock.now()).needBackToSource).toBe(true);
    expect(peerMessage(cached, clock.now()).needBackToSource).toBe(false);
  });
});
