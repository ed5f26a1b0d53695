// The access check the download socket applies for a caller that is not the daemon's uid: the
// kernel's classes (owner, then group incl. supplementary groups, then others; never summed),
// the sticky-directory rule for replacing an entry, and the supplementary groups read from
// /proc/<pid>/status only while that status still describes the caller that connected.
import { describe, expect, it } from "vitest";
import { callerMay, callerMayReplace, callerOf, groupsFromStatus, MAY_EXEC, MAY_READ, MAY_WRITE } from "../../src/daemon/download/caller-access.js";

const DIR = 0o040000;
const FILE = 0o100000;
const alice = { uid: 1000, gid: 1000, groups: [27, 100] };
const WX = MAY_WRITE | MAY_EXEC;

describe("callerMay", () => {
  it("uses the owner class for the owner, even when others may do more", () => {
    expect(callerMay(alice, { uid: 1000, gid: 0, mode: DIR | 0o755 }, WX)).toBe(true);
    expect(callerMay(alice, { uid: 1000, gid: 0, mode: DIR | 0o577 }, WX)).toBe(false);
  });

  it("uses the group class for the primary or a supplementary group", () => {
    expect(callerMay(alice, { uid: 0, gid: 1000, mode: DIR | 0o775 }, WX)).toBe(true);
    expect(callerMay(alice, { uid: 0, gid: 100, mode: DIR | 0o770 }, WX)).toBe(true);
    expect(callerMay(alice, { uid: 0, gid: 101, mode: DIR | 0o770 }, WX)).toBe(false);
    // A member of the group gets the group's bits, not others': 0707 refuses the group.
    expect(callerMay(alice, { uid: 0, gid: 27, mode: DIR | 0o707 }, WX)).toBe(false);
  });

  it("uses the others class otherwise", () => {
    expect(callerMay(alice, { uid: 0, gid: 0, mode: DIR | 0o755 }, WX)).toBe(false);
    expect(callerMay(alice, { uid: 0, gid: 0, mode: DIR | 0o755 }, MAY_EXEC)).toBe(true);
    expect(callerMay(alice, { uid: 0, gid: 0, mode: DIR | 0o1777 }, WX)).toBe(true);
    expect(callerMay(alice, { uid: 0, gid: 0, mode: FILE | 0o640 }, MAY_READ)).toBe(false);
  });

  it("lets root write anything and search any directory, but not run a file without x bits", () => {
    const root = { uid: 0, gid: 0, groups: [] };
    expect(callerMay(root, { uid: 5, gid: 5, mode: DIR | 0o000 }, WX)).toBe(true);
    expect(callerMay(root, { uid: 5, gid: 5, mode: FILE | 0o000 }, MAY_WRITE)).toBe(true);
    expect(callerMay(root, { uid: 5, gid: 5, mode: FILE | 0o644 }, MAY_EXEC)).toBe(false);
  });
});

describe("callerMayReplace", () => {
  const tmp = { uid: 0, gid: 0, mode: DIR | 0o1777 };
  it("in a sticky directory allows only the entry's or the directory's owner", () => {
    expect(callerMayReplace(alice, tmp, { uid: 1000, gid: 1000, mode: FILE | 0o644 })).toBe(true);
    expect(callerMayReplace(alice, tmp, { uid: 0, gid: 0, mode: FILE | 0o666 })).toBe(false);
    expect(callerMayReplace(alice, { ...tmp, uid: 1000 }, { uid: 0, gid: 0, mode: FILE | 0o666 })).toBe(true);
  });
  it("leaves a directory without the sticky bit to the mode check", () => {
    expect(callerMayReplace(alice, { uid: 0, gid: 0, mode: DIR | 0o777 }, { uid: 0, gid: 0, mode: FILE | 0o666 })).toBe(true);
  });
});

describe("supplementary groups from /proc/<pid>/status", () => {
  const status = (uid: string, gid: string, groups: string) => `Name:\tdfget\nUid:\t${uid}\nGid:\t${gid}\nFDSize:\t64\nGroups:\t${groups}\nNStgid:\t4242\n`;

  it("reads Groups: when effective and filesystem ids are the caller's", () => {
    expect(groupsFromStatus(status("1000\t1000\t1000\t1000", "1000\t1000\t1000\t1000", "27 100 "), 1000, 1000)).toEqual([27, 100]);
    // An empty Groups: line is followed by other numbers (NStgid:): none of them is a group.
    expect(groupsFromStatus(status("1000\t1000\t1000\t1000", "1000\t1000\t1000\t1000", ""), 1000, 1000)).toEqual([]);
  });

  it("gives no groups when the status is of another identity (exited and reused pid, setuid change)", () => {
    expect(groupsFromStatus(status("0\t0\t0\t0", "0\t0\t0\t0", "0 27"), 1000, 1000)).toEqual([]);
    expect(groupsFromStatus(status("1000\t1000\t1000\t1000", "1000\t50\t1000\t50", "27"), 1000, 1000)).toEqual([]);
    expect(groupsFromStatus("", 1000, 1000)).toEqual([]);
  });

  it("reads this process's own status", async () => {
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const me = await callerOf({ pid: process.pid, uid, gid });
    // Node's getgroups() may add the effective gid to the supplementary list /proc shows.
    expect(new Set([...me.groups, gid])).toEqual(new Set([...(process.getgroups?.() ?? []), gid]));
    expect(await callerOf({ pid: 2 ** 22 + 1, uid, gid })).toEqual({ uid, gid, groups: [] });
  });
});
