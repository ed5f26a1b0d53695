// Incompressible content files for benchmarks (8 MiB random blocks), written once per run.
import { randomFillSync } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";

export function writeContent(path: string, size: number): void {
  const fd = openSync(path, "w");
  const block = Buffer.allocUnsafe(8 << 20);
  for (let off = 0; off < size; off += block.length) {
    randomFillSync(block);
    writeSync(fd, block, 0, Math.min(block.length, size - off));
  }
  closeSync(fd);
}
