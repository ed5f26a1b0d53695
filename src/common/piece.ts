// Piece layout every peer must agree on (Dragonfly's `calculate_piece_length`): about 500
// pieces per task, rounded up to a power of two, clamped to 4–64 MiB; piece n starts at
// n × pieceLength and the last piece takes the remainder.
export const MIN_PIECE_LENGTH = 4 * 1024 * 1024;
export const MAX_PIECE_LENGTH = 64 * 1024 * 1024;
const TARGET_PIECE_COUNT = 500;

function nextPowerOfTwo(n: number): number {
  if (n <= 1) return 1;
  return 2 ** Math.ceil(Math.log2(n));
}

export function pieceLengthFor(contentLength: number): number {
  const raw = Math.floor(contentLength / TARGET_PIECE_COUNT);
  return Math.min(MAX_PIECE_LENGTH, Math.max(MIN_PIECE_LENGTH, nextPowerOfTwo(raw)));
}

export function pieceCount(contentLength: number, pieceLength: number): number {
  return contentLength === 0 ? 0 : Math.ceil(contentLength / pieceLength);
}

export interface PieceRange {
  number: number;
  offset: number;
  length: number;
}

export function pieceRange(number: number, contentLength: number, pieceLength: number): PieceRange {
  const offset = number * pieceLength;
  if (!Number.isInteger(number) || number < 0 || offset >= contentLength) {
    throw new RangeError(`piece ${number} is outside a ${contentLength}-byte task with ${pieceLength}-byte pieces`);
  }
  return { number, offset, length: Math.min(pieceLength, contentLength - offset) };
}
