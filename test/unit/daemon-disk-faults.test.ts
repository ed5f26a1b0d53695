// Storage faults during a download (issue #20): ENOSPC stops the attempt at once, EIO is worth a
// re-fetch until the budget is spent; what a failed task leaves behind; which tasks count as
// being uploaded to children.
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { DEVICE_IO_LIMIT, DiskFaults, isDeviceIo, isNoSpace } from "../../src/daemon/task/disk-faults.js";
import { failureCause, keepForResume } from "../../src/daemon/task/retention.js";
import { TaskUploads } from "../../src/daemon/task/uploads.js";

const nativeError = (code: string, message = "write piece 2: failed") => Object.assign(new Error(message), { code });

describe("DiskFaults", () => {
  it("knows full disks and failing devices by their codes, native or node:fs", () => {
    expect(isNoSpace(nativeError("DF_NO_SPACE"))).toBe(true);
    expect(isNoSpace(nativeError("ENOSPC"))).toBe(true);
    expect(isNoSpace(nativeError("EDQUOT"))).toBe(true);
    expect(isNoSpace(nativeError("DF_IO"))).toBe(false);
    expect(isDeviceIo(nativeError("DF_DEVICE_IO"))).toBe(true);
    expect(isDeviceIo(nativeError("EIO"))).toBe(true);
    expect(isDeviceIo(new Error("Input/output error"))).toBe(false);
  });

  it("has an EIO re-fetched until the budget is spent, then stops the attempt with a clear error", () => {
    const f = new DiskFaults("t1", "/data/tasks", silentLogger());
    const signal = f.attempt(undefined);
    for (let i = 1; i < DEVICE_IO_LIMIT; i++) expect(f.observe(nativeError("DF_DEVICE_IO"))).toBe("refetch");
    expect(signal.aborted).toBe(false);
    expect(f.observe(nativeError("DF_DEVICE_IO", "write piece 7: Input/output error (os error 5)"))).toBe("stop");
    expect(signal.aborted).toBe(true);
    expect(f.exhausted?.message).toBe(`task t1: the storage device under /data/tasks failed ${DEVICE_IO_LIMIT} piece writes with an I/O error (EIO), the last: write piece 7: Input/output error (os error 5)`);
    // The budget covers the whole download: a later attempt does not start over.
    f.attempt(undefined);
    expect(f.observe(nativeError("DF_DEVICE_IO"))).toBe("stop");
  });

  it("stops the attempt at the first ENOSPC; the next attempt starts clean and still follows the requester", () => {
    const f = new DiskFaults("t1", "/data/tasks", silentLogger());
    const requester = new AbortController();
    const first = f.attempt(requester.signal);
    expect(f.observe(nativeError("DF_NO_SPACE"))).toBe("stop");
    expect(first.aborted).toBe(true);
    expect(f.noSpace?.message).toBe("write piece 2: failed");
    const second = f.attempt(requester.signal);
    expect(second.aborted).toBe(false);
    expect(f.noSpace).toBeUndefined();
    expect(f.observe(nativeError("DF_BUSY"))).toBe("other");
    requester.abort();
    expect(second.aborted).toBe(true);
  });
});

describe("what a failed task leaves behind", () => {
  const failure = { kind: "backend", noSpace: false, deviceIo: false };

  it("keeps verified pieces after a transient failure, for a resume", () => {
    expect(failureCause({ ...failure, originStatus: 503 })).toBe("transient");
    expect(failureCause({ ...failure, kind: "unavailable" })).toBe("transient");
    expect(failureCause({ ...failure, kind: "internal" })).toBe("transient");
    expect(keepForResume(12, "transient")).toBe(true);
    expect(keepForResume(0, "transient")).toBe(false);
  });

  it("removes the task for a full disk, a failing device, wrong content or the origin's refusal", () => {
    expect(failureCause({ ...failure, noSpace: true })).toBe("no_space");
    expect(failureCause({ ...failure, kind: "no_space" })).toBe("no_space");
    expect(failureCause({ ...failure, kind: "internal", deviceIo: true })).toBe("device_io");
    expect(failureCause({ ...failure, kind: "invalid" })).toBe("wrong_content");
    expect(failureCause({ ...failure, originStatus: 404 })).toBe("refused");
    expect(failureCause({ ...failure, originStatus: 429 })).toBe("transient");
    for (const cause of ["no_space", "device_io", "wrong_content", "refused"] as const) expect(keepForResume(100, cause)).toBe(false);
  });
});

describe("TaskUploads", () => {
  it("counts a task as uploaded while a child's stream is open and for a grace period after a piece left", () => {
    let now = 0;
    const u = new TaskUploads(() => now, 30_000);
    expect(u.active("t")).toBe(false);
    const close = u.open("t");
    const closeOther = u.open("t");
    close();
    close();
    expect(u.active("t")).toBe(true);
    closeOther();
    expect(u.active("t")).toBe(false);
    u.served("t");
    now = 29_999;
    expect(u.active("t")).toBe(true);
    now = 30_000;
    expect(u.active("t")).toBe(false);
  });

  it("runs a deferred removal once no child downloads the task any more", async () => {
    const u = new TaskUploads();
    const close = u.open("t");
    let ran = 0;
    u.whenIdle("t", () => ran++, 5);
    await new Promise((r) => setTimeout(r, 20));
    expect(ran).toBe(0);
    close();
    await new Promise((r) => setTimeout(r, 20));
    expect(ran).toBe(1);
  });
});
