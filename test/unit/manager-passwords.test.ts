// Password hashes: new ones use scrypt N = 2^17 (r 8, p 1); hashes stored with older
// parameters (the manager wrote N = 2^14 before) still verify with the parameters they name.
import { describe, expect, it } from "vitest";
import { hashPassword, TIMING_DUMMY_HASH, verifyPassword } from "../../src/manager/auth/passwords.js";

// Made by the previous code (N 2^14, 64-byte key) and by other parameters, salt "0123456789abcdef".
const OLD_N14 = "scrypt$16384$8$1$MDEyMzQ1Njc4OWFiY2RlZg==$0LupyHkzAIgDr9UDsriAAf87vMbCbcaUfDvFOAHk0D0j5FDm643A031eTgoXAgCtB9917OPAizRUNx9itOkmEA==";
const OTHER = "scrypt$1024$4$2$MDEyMzQ1Njc4OWFiY2RlZg==$pM6jdhPT23p+EDpUFwfNjooI8FMcdVPYSVQX5LS/e6w=";

describe("password hashes", () => {
  it("hashes new passwords with N >= 2^17 and verifies them", async () => {
    const h = await hashPassword("correct horse");
    const [scheme, n, r, p, salt, key] = h.split("$");
    expect(scheme).toBe("scrypt");
    expect(Number(n)).toBeGreaterThanOrEqual(2 ** 17);
    expect([r, p]).toEqual(["8", "1"]);
    expect(Buffer.from(salt ?? "", "base64")).toHaveLength(16);
    expect(Buffer.from(key ?? "", "base64")).toHaveLength(64);
    expect(await verifyPassword("correct horse", h)).toBe(true);
    expect(await verifyPassword("correct horsf", h)).toBe(false);
    expect(await hashPassword("correct horse")).not.toBe(h);
  });

  it("verifies hashes stored with older parameters by the parameters they carry", async () => {
    expect(await verifyPassword("correct horse", OLD_N14)).toBe(true);
    expect(await verifyPassword("wrong", OLD_N14)).toBe(false);
    expect(await verifyPassword("correct horse", OTHER)).toBe(true);
  });

  it("refuses malformed or oversized stored parameters without deriving", async () => {
    for (const bad of ["", "bcrypt$x", "scrypt$1000$8$1$AAAA$AAAA", "scrypt$2097152$8$1$AAAA$AAAA", "scrypt$16384$64$1$AAAA$AAAA", "scrypt$16384$8$1$AAAA$"]) {
      expect(await verifyPassword("x", bad), bad).toBe(false);
    }
  });

  it("equalises sign-in timing with a dummy hash of today's parameters", async () => {
    expect(TIMING_DUMMY_HASH.split("$").slice(1, 4)).toEqual((await hashPassword("x")).split("$").slice(1, 4));
    expect(await verifyPassword("x", TIMING_DUMMY_HASH)).toBe(false);
  });
});
