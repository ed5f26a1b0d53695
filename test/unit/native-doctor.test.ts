import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runDoctor } from "../../src/cli/doctor.js";
import { defaultPieceServePath } from "../../src/native/index.js";

describe("doctor and the native piece server", () => {
  it("reports the piece serve path chosen by measurement", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "doctor-native-"));
    try {
      const r = runDoctor({ dataDir, tmpfsDir: "/dev/shm", strict: false });
      expect(["sendfile", "splice", "buffered"]).toContain(r.pieceServePath);
      expect(r.pieceServePath).toBe(defaultPieceServePath());
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
