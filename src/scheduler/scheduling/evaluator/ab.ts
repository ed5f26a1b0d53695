// A/B mode: children are split between two evaluators by a hash of their host id, so the same
// host always lands in the same arm and the arms' download costs can be compared in metrics.
import { crc32 } from "node:zlib";
import type { Peer } from "../../resource/peer.js";
import type { Evaluator } from "./evaluator.js";

export type Arm = "a" | "b";

export function armOf(hostId: string): Arm {
  return crc32(hostId) % 2 === 0 ? "a" : "b";
}

export class AbEvaluator implements Evaluator {
  readonly name: string;

  constructor(
    readonly a: Evaluator,
    readonly b: Evaluator,
  ) {
    this.name = `ab(${a.name},${b.name})`;
  }

  evaluatorFor(child: Peer): Evaluator {
    return armOf(child.host.id) === "a" ? this.a : this.b;
  }

  evaluateParents(parents: readonly Peer[], child: Peer, now: number): Peer[] {
    return this.evaluatorFor(child).evaluateParents(parents, child, now);
  }

  isBadParent(peer: Peer): boolean {
    return this.a.isBadParent(peer);
  }
}
