// The memory tier's root in a world-writable tmpfs: created 0700 for this user, and refused when
// somebody else got there first (symlink, foreign owner, open mode).
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ownTmpfsRoot, privateTmpfsRoot } from "../../src/daemon/storage/tmpfs-root.js";

const uid = process.getuid?.() ?? 0;
const dirs: string[] = [];
const shm = () => {
  const d = mkdtempSync(join(tmpdir(), "tmpfs-root-"));
  chmodSync(d, 0o1777);
  dirs.push(d);
  return d;
};

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("ownTmpfsRoot", () => {
  it("creates damselfly-<uid> with mode 0700 and puts the host's tasks under it", async () => {
    const d = shm();
    const root = await ownTmpfsRoot(d, "10.0.0.1-host/a");
    expect(root).toBe(join(d, `damselfly-${uid}`, "10.0.0.1-host_a", "tasks"));
    expect(statSync(join(d, `damselfly-${uid}`)).mode & 0o777).toBe(0o700);
    // Idempotent on the daemon's next start.
    await expect(ownTmpfsRoot(d, "10.0.0.1-host/a")).resolves.toBe(root);
  });

  it("refuses a symlink planted at the name", async () => {
    const d = shm();
    const elsewhere = join(d, "attacker");
    mkdirSync(elsewhere, { mode: 0o700 });
    symlinkSync(elsewhere, join(d, `damselfly-${uid}`));
    await expect(ownTmpfsRoot(d, "h")).rejects.toThrow(/is a symlink; refusing it/);
  });

  it("refuses a directory open to other users", async () => {
    const d = shm();
    mkdirSync(join(d, `damselfly-${uid}`), { mode: 0o700 });
    chmodSync(join(d, `damselfly-${uid}`), 0o755);
    await expect(ownTmpfsRoot(d, "h")).rejects.toThrow(/mode 755, open to other users/);
  });

  it.runIf(uid === 0)("refuses a directory of another user (as root, the test can make one)", async () => {
    const d = shm();
    mkdirSync(join(d, `damselfly-${uid}`), { mode: 0o700 });
    chownSync(join(d, `damselfly-${uid}`), 65534, 65534);
    await expect(ownTmpfsRoot(d, "h")).rejects.toThrow(/belongs to uid 65534, not 0/);
  });
});

describe("privateTmpfsRoot (a one-shot dfget's daemon)", () => {
  it("makes a fresh 0700 directory of its own per call, apart from the shared root, and removes it", async () => {
    const d = shm();
    const a = await privateTmpfsRoot(d);
    const b = await privateTmpfsRoot(d);
    expect(a.root).not.toBe(b.root);
    for (const r of [a, b]) {
      const base = join(r.root, "..");
      expect(base.startsWith(join(d, `damselfly-${uid}-oneshot-`))).toBe(true);
      const st = lstatSync(base);
      expect([st.isDirectory(), st.uid, st.mode & 0o777]).toEqual([true, uid, 0o700]);
    }
    expect(existsSync(join(d, `damselfly-${uid}`))).toBe(false);
    mkdirSync(a.root, { recursive: true });
    writeFileSync(join(a.root, "piece"), "x");
    await a.remove();
    await b.remove();
    expect(readdirSync(d)).toEqual([]);
  });

  it("fails clearly when the tmpfs directory is missing", async () => {
    await expect(privateTmpfsRoot(join(shm(), "absent"))).rejects.toThrow(/storage\.tmpfsDir: cannot create a directory in .*absent/);
  });
});
