// HTTP Range (RFC 9110 §14) for one byte range over content of known length: `bytes=a-b`,
// `bytes=a-`, `bytes=-n`. Several ranges, other units and malformed values are ignored (the
// whole content is served with 200), as the RFC allows; a range starting past the end is 416.
export type RangeResult = { kind: "none" } | { kind: "unsatisfiable" } | { kind: "range"; start: number; end: number };

export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: "none" };
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return { kind: "none" };
  const first = m[1] === "" ? undefined : Number(m[1]);
  const last = m[2] === "" ? undefined : Number(m[2]);
  if ((first !== undefined && !Number.isSafeInteger(first)) || (last !== undefined && !Number.isSafeInteger(last))) return { kind: "none" };
  if (first === undefined) {
    // Suffix range: the last n bytes.
    const n = last ?? 0;
    if (n === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "range", start: Math.max(0, size - n), end: size - 1 };
  }
  if (last !== undefined && last < first) return { kind: "none" };
  if (first >= size) return { kind: "unsatisfiable" };
  return { kind: "range", start: first, end: last === undefined ? size - 1 : Math.min(last, size - 1) };
}

/** The pieces that hold bytes [start, end] (inclusive). */
export function coveringPieces(start: number, end: number, pieceLength: number): { first: number; last: number } {
  return { first: Math.floor(start / pieceLength), last: Math.floor(end / pieceLength) };
}
