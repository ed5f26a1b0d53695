import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runDoctor } from "../../src/cli/doctor.js";

describe("damselfly doctor", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "doctor-"));

  it("reports every capability with a reason when false", () => {
    const r = runDoctor({ dataDir, tmpfsDir: dataDir, strict: false });
    for (const key of ["node", "addon", "ioUring", "oDirect", "tmpfs", "sendfile", "zstd", "aesGcm"]) expect(r).toHaveProperty(key);
    expect(r.zstd && r.aesGcm).toBe(true);
    // A directory under /tmp on this kind of host is not tmpfs, or it is; either way the
    // report must be self-consistent.
    expect(r.tmpfs).toBe(r.reasons.tmpfs === undefined);
  });

  it("fails in strict mode when the tmpfs directory is not tmpfs", () => {
    const r = runDoctor({ dataDir, tmpfsDir: "/proc", strict: true });
    expect(r.tmpfs).toBe(false);
    expect(r.reasons.tmpfs).toMatch(/not a tmpfs/);
    expect(r.ok).toBe(false);
  });
});
