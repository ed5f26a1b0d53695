// The sealed staging file of an origin without a content length (staging-file.ts): only
// ciphertext reaches the disk, reads at any offset and length (across records, the short last
// record) return the origin's bytes, and a changed byte on disk fails the read instead of
// reaching the task.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { plainStaging, sealedStaging } from "../../src/daemon/task/staging-file.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function stage(seal: boolean, content: Buffer, chunk: number) {
  const dir = mkdtempSync(join(tmpdir(), "staging-file-"));
  dirs.push(dir);
  const path = join(dir, "staged");
  const file = await open(path, "w+");
  const staging = seal ? sealedStaging(file, path) : plainStaging(file, path);
  for (let off = 0; off < content.length; off += chunk) await staging.append(content.subarray(off, off + chunk));
  await staging.finish();
  return { path, file, staging };
}

describe("staging file", () => {
  // 3 records of 64 KiB and a short one, appended in chunks that straddle the records.
  const content = randomBytes(3 * 65536 + 1234);

  it.each([true, false])("sealed %s: reads back the origin's bytes at any offset", async (seal) => {
    const { path, file, staging } = await stage(seal, content, 40_000);
    try {
      const onDisk = readFileSync(path);
      const marker = content.subarray(70_000, 70_064);
      expect(onDisk.includes(marker)).toBe(!seal);
      for (const [offset, length] of [
        [0, content.length],
        [65_530, 20],
        [3 * 65536, 1234],
        [12_345, 150_000],
      ] as const) {
        const buf = Buffer.alloc(length);
        await staging.read(offset, buf);
        expect(buf.equals(content.subarray(offset, offset + length))).toBe(true);
      }
    } finally {
      await file.close();
    }
  });

  it("fails the read of a record changed on disk, and a read past the end", async () => {
    const { path, file, staging } = await stage(true, content, 65536);
    try {
      const onDisk = readFileSync(path);
      onDisk[65552 + 10] = (onDisk[65552 + 10] ?? 0) ^ 1;
      writeFileSync(path, onDisk);
      await expect(staging.read(0, Buffer.alloc(1000))).resolves.toBeUndefined();
      await expect(staging.read(65536, Buffer.alloc(10))).rejects.toThrow(`staged content ${path}: record 1 failed its integrity check`);
      await expect(staging.read(content.length - 5, Buffer.alloc(10))).rejects.toThrow("is past its");
    } finally {
      await file.close();
    }
  });
});
