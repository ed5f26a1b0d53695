// zstd per piece, addon vs zstd-napi (the same libzstd, bound by another addon) on one 4 MiB
// piece of mixed data: executable bytes, generated text and incompressible noise. Both compress
// at level 3 on the calling thread (the addon can also split a piece over zstd worker threads,
// but on a loaded 2-core box that gains nothing, so both run single-threaded) and both
// decompress the same frame. The addon writes into an output buffer
// the caller reuses (its allocation-free API); zstd-napi's API allocates a Buffer per call.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { compress as zCompress, decompress as zDecompress } from "zstd-napi";
import { zstdCompress, zstdCompressBound, zstdCompressInto, zstdDecompressInto } from "../src/native/index.js";
import { interleave, opsPerSecond, throughputResult } from "./lib/measure.js";
import type { BenchSuite } from "./lib/types.js";

const PIECE = 4 << 20;
const GB = 1e9;
const WORKERS = 0;

function mixedPiece(): Buffer {
  const exe = readFileSync(process.execPath);
  const start = Math.min(exe.length - (2 << 20), 8 << 20);
  const words = ["piece", "task", "peer", "scheduler", "digest", "offset", "length", "seed", "parent", "host", "tcp", "crc32"];
  let text = "";
  let x = 12345;
  while (text.length < 1 << 20) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    text += `{"${words[x % words.length] ?? ""}":${x % 100000},"n":"${words[(x >> 8) % words.length] ?? ""}"}\n`;
  }
  return Buffer.concat([exe.subarray(Math.max(0, start), Math.max(0, start) + (2 << 20)), Buffer.from(text).subarray(0, 1 << 20), randomBytes(1 << 20)]).subarray(0, PIECE);
}

const suite: BenchSuite = {
  suite: "native",
  benchmarks: [
    {
      name: "zstd-compress-l3",
      run: async (ctx) => {
        const piece = mixedPiece();
        const seconds = ctx.short ? 0.4 : 1.2;
        let sink = 0;
        const out = Buffer.alloc(zstdCompressBound(PIECE));
        const m = await interleave(
          ctx.short ? 3 : 5,
          async () => (PIECE * (await opsPerSecond(() => (sink += zstdCompressInto(piece, 3, out, WORKERS)), seconds))) / GB,
          async () => (PIECE * (await opsPerSecond(() => (sink += zCompress(piece, { compressionLevel: 3, nbWorkers: WORKERS }).length), seconds))) / GB,
        );
        const ratio = PIECE / zstdCompress(piece, 3, WORKERS).length;
        return throughputResult("zstd-compress-l3", "GB/s", m.ours, m.baseline, "zstd-napi", { piece: "4 MiB mixed", workers: WORKERS, compressionRatio: ratio, sink: sink > 0 });
      },
    },
    {
      name: "zstd-decompress",
      run: async (ctx) => {
        const piece = mixedPiece();
        const frame = zCompress(piece, { compressionLevel: 3 });
        const seconds = ctx.short ? 0.4 : 1.2;
        let sink = 0;
        const out = Buffer.alloc(PIECE);
        const m = await interleave(
          ctx.short ? 3 : 5,
          async () => (PIECE * (await opsPerSecond(() => (sink += zstdDecompressInto(frame, out)), seconds))) / GB,
          async () => (PIECE * (await opsPerSecond(() => (sink += zDecompress(frame).length), seconds))) / GB,
        );
        return throughputResult("zstd-decompress", "GB/s", m.ours, m.baseline, "zstd-napi", { piece: "4 MiB mixed, one level-3 frame made by zstd-napi", sink: sink > 0 });
      },
    },
  ],
};

export default suite;
