// The digests a task's pieces had at the origin, as the peers that fetched them from there
// reported them (DownloadPieceBackToSourceFinishedRequest.piece.digest). They are what a
// receiver checks a piece against before it stores it (issue 21, "pieces vouched for by the
// source"): the parent that sends a piece also sends its CRC in the same vortex frame, so that
// CRC only proves the bytes were not damaged on the way, never that the parent did not make
// them up. Receivers read these digests with StatTask (Task.pieces), as Dragonfly's scheduler
// hands out the back-to-source pieces it stores on the task.
//
// The first report of a piece fixes its digest: a later back-to-source report of the same piece
// with another value of the same algorithm is a conflict (another version of the content, or a
// peer reporting bytes it did not fetch) and does not replace it, so one peer cannot rewrite
// what the receivers already verify against. A report of another algorithm (a Dragonfly client
// reports crc32, ours blake3) replaces a crc32 one: a collision-resistant digest vouches for
// more, and both came from the origin's bytes.
import type { Piece as PieceMessage } from "../../gen/common/v2/common.js";

/** Bound on pieces kept per task when the piece count is unknown. */
export const MAX_STORED_PIECES = 100_000;

/** stored: first report; same: agrees; upgraded: replaced a crc32; kept: another algorithm, first kept; conflict: disagrees; dropped: over the bound. */
export type VouchResult = "stored" | "same" | "upgraded" | "kept" | "conflict" | "dropped";

const algorithmOf = (digest: string) => digest.slice(0, Math.max(0, digest.indexOf(":")));

export class PieceDigests {
  private readonly pieces = new Map<number, PieceMessage>();

  /**
   * Records a back-to-source report of a piece. `totalPieceCount` < 0 (unknown) bounds the
   * pieces kept at MAX_STORED_PIECES.
   */
  vouch(piece: PieceMessage, totalPieceCount: number): VouchResult {
    const held = this.pieces.get(piece.number);
    const stored = { ...piece, content: undefined };
    if (!held) {
      if (totalPieceCount <= 0 && this.pieces.size >= MAX_STORED_PIECES) return "dropped";
      this.pieces.set(piece.number, stored);
      return "stored";
    }
    if (held.digest.toLowerCase() === piece.digest.toLowerCase() || piece.digest === "") return "same";
    if (held.digest === "" || (algorithmOf(held.digest) === "crc32" && algorithmOf(piece.digest) !== "crc32")) {
      this.pieces.set(piece.number, stored);
      return "upgraded";
    }
    return algorithmOf(held.digest) === algorithmOf(piece.digest) ? "conflict" : "kept";
  }

  get(number: number): PieceMessage | undefined {
    return this.pieces.get(number);
  }

  get size(): number {
    return this.pieces.size;
  }

  /** Pieces in number order, as Task.pieces carries them. */
  list(): PieceMessage[] {
    return [...this.pieces.values()].sort((a, b) => a.number - b.number);
  }

  /** The origin could not deliver: what was believed about the content is void. */
  clear(): void {
    this.pieces.clear();
  }
}
