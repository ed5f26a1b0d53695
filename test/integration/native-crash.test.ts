// kill -9 in the middle of piece writes must never leave a piece marked finished whose bytes
// do not verify. A child process writes pieces as fast as it can; we SIGKILL it once it has
// committed some, reopen the store here and verify every piece it claims.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { openTaskStore } from "../../src/native/index.js";

const TASK = "0f".repeat(32);
const PIECE = 1 << 20;
const COUNT = 256;
const facade = fileURLToPath(new URL("../../src/native/index.ts", import.meta.url));

const child = `
import { openTaskStore } from ${JSON.stringify(facade)};
const [dir, mode] = process.argv.slice(-2);
const store = openTaskStore({ dataDir: dir, taskId: ${JSON.stringify(TASK)}, contentLength: ${PIECE * COUNT}, pieceLength: ${PIECE}, direct: mode === "direct" ? undefined : false });
let done = 0;
const next = async (n) => {
  const b = Buffer.alloc(${PIECE}, n & 0xff);
  b.writeUInt32BE(n, 0);
  await store.writePiece(n, b);
  if (++done === 8) process.stdout.write("committed\\n");
};
const lanes = [];
let n = 0;
for (let l = 0; l < 8; l++) lanes.push((async () => { while (n < ${COUNT}) await next(n++); })());
await Promise.all(lanes);
process.stdout.write("all\\n");
setInterval(() => {}, 1000);
`;

describe("native piece store crash safety", () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it.each(["direct", "buffered"])("survives kill -9 during %s writes with only verifiable pieces marked", async (mode) => {
    const dir = mkdtempSync(join(tmpdir(), "df-crash-"));
    dirs.push(dir);
    const proc = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", child, "--", dir, mode], {
      stdio: ["ignore", "pipe", "inherit"],
      cwd: fileURLToPath(new URL("../..", import.meta.url)),
    });
    await new Promise<void>((resolve, reject) => {
      proc.stdout.on("data", (c: Buffer) => {
        if (c.toString().includes("committed")) resolve();
      });
      proc.on("exit", (code) => reject(new Error(`child exited early with ${code}`)));
    });
    proc.kill("SIGKILL");
    await new Promise((r) => proc.on("exit", r));

    const store = openTaskStore({ dataDir: dir, taskId: TASK, contentLength: PIECE * COUNT, pieceLength: PIECE });
    const finished = store.finishedPieces();
    expect(finished.length).toBeGreaterThanOrEqual(8);
    for (const p of finished) {
      await store.verifyPiece(p.number);
      const b = await store.readPiece(p.number);
      expect(b.readUInt32BE(0)).toBe(p.number);
    }
    // The store keeps working after the crash: the missing pieces can still be written.
    const missing = Array.from({ length: COUNT }, (_, n) => n).find((n) => !store.piece(n));
    if (missing !== undefined) await store.writePiece(missing, Buffer.alloc(PIECE, 1));
  });
});
