import { execFileSync, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

const bin = new URL("../../bin/damselfly.js", import.meta.url).pathname;

describe("damselfly doctor (built CLI)", () => {
  it("prints the JSON report with io_uring, O_DIRECT and sendfile working here", () => {
    const out = execFileSync(process.execPath, [bin, "doctor", "--json", "--data-dir", "/var/tmp/damselfly-doctor"], { encoding: "utf8" });
    const r = JSON.parse(out) as Record<string, unknown>;
    expect(r.node).toBe(process.version);
    expect(typeof r.addon).toBe("string");
    expect(r.ioUring).toBe(true);
    expect(r.oDirect).toBe(true);
    expect(r.sendfile).toBe(true);
  });

  it("exits 1 with a reason when a required capability fails", () => {
    const res = spawnSync(process.execPath, [bin, "doctor", "--strict", "--tmpfs-dir", "/proc"], { encoding: "utf8" });
    expect(res.status).toBe(1);
    expect(res.stdout).toMatch(/tmpfs\s+FAIL \(required\): \/proc is not a tmpfs mount/);
  });

  it("rejects an unknown flag with a one-line error", () => {
    const res = spawnSync(process.execPath, [bin, "doctor", "--bogus"], { encoding: "utf8" });
    expect(res.status).not.toBe(0);
    expect(res.stderr.trim()).toBe("damselfly: error: unknown option '--bogus'");
  });
});
