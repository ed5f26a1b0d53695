// The napi binding surface stays small: every runtime export of the addon is listed here, so
// adding one (or a bench-only helper such as a no-op) fails until this list and the limit are
// looked at again. Variants fold into one export with an optional output Buffer; the facade in
// src/native keeps the per-variant names for callers.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { binding } from "../../src/native/binding.js";

const LIMIT = 30;

const EXPORTS = [
  "CancelToken",
  "DigestHasher",
  "OriginBody",
  "PieceRace",
  "PieceServerHandle",
  "TaskStore",
  "ZstdDecoder",
  "ZstdEncoder",
  "__napiBindingTarget",
  "aesGcmOpen",
  "aesGcmSeal",
  "allocPieceBuffer",
  "closeIdlePieceConnections",
  "defaultPieceServePath",
  "deleteTaskStore",
  "digest",
  "openOriginBody",
  "openPiece",
  "openPieces",
  "originStats",
  "peerCredentials",
  "probeHost",
  "sealPiece",
  "sealPieces",
  "startPieceServer",
  "version",
  "zstdCompress",
  "zstdCompressAsync",
  "zstdDecompress",
  "zstdDecompressAsync",
];

describe("native binding surface", () => {
  it(`exports at most ${LIMIT} names at runtime, exactly the listed ones`, () => {
    const names = Object.keys(binding).sort();
    expect(names).toEqual([...EXPORTS].sort());
    expect(names.length).toBeLessThanOrEqual(LIMIT);
  });

  it("declares in index.d.cts exactly what the loaded addon exports", () => {
    // A stale .node next to regenerated typings (or the reverse) shows up here.
    const dts = readFileSync(new URL("../../native/binding/index.d.cts", import.meta.url), "utf8");
    const declared = [...dts.matchAll(/^export declare (?:const enum|enum|const|class|function) (\w+)/gm)].map((m) => m[1]).sort();
    expect(declared).toEqual(Object.keys(binding).sort());
  });
});
