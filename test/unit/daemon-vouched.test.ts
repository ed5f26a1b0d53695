// VouchedDigests: the origin's piece digests a download reads from the scheduler (StatTask),
// asked again only while wanted and at most every minIntervalMs.
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { Task } from "../../src/gen/common/v2/common.js";
import { VouchedDigests } from "../../src/daemon/piece/vouched.js";

function scheduler() {
  const s = {
    calls: 0,
    pieces: [] as Array<{ number: number; digest: string }>,
    fail: false,
    statTask: (): Promise<Task | undefined> => {
      s.calls++;
      if (s.fail) return Promise.reject(new Error("unavailable"));
      return Promise.resolve(Task.fromPartial({ id: "t", pieces: s.pieces.map((p) => ({ ...p, offset: 0, length: 1 })) }));
    },
  };
  return s;
}

const flush = () => new Promise<void>((r) => setImmediate(r));

describe("VouchedDigests", () => {
  it("learns the scheduler's digests, tells its listeners, and follows a replaced one", async () => {
    const s = scheduler();
    s.pieces = [
      { number: 0, digest: "crc32:1" },
      { number: 2, digest: "" },
    ];
    const v = new VouchedDigests({ statTask: s.statTask, minIntervalMs: 0, log: silentLogger() });
    let changes = 0;
    v.onChange(() => changes++);
    await v.ask();
    expect(v.get(0)).toBe("crc32:1");
    expect(v.get(2)).toBeUndefined();
    expect(changes).toBe(1);
    await v.ask();
    expect(changes).toBe(1);
    s.pieces = [{ number: 0, digest: "blake3:00" }];
    await v.ask();
    expect(v.get(0)).toBe("blake3:00");
    expect(changes).toBe(2);
    v.close();
  });

  it("asks at most once per interval however often it is wanted, and survives a failing scheduler", async () => {
    const s = scheduler();
    const clock = { t: 0 };
    const v = new VouchedDigests({ statTask: s.statTask, minIntervalMs: 40, log: silentLogger(), now: () => clock.t });
    s.fail = true;
    v.want();
    v.want();
    await flush();
    expect(s.calls).toBe(1);
    s.fail = false;
    s.pieces = [{ number: 5, digest: "blake3:55" }];
    clock.t = 10;
    for (let i = 0; i < 10; i++) v.want();
    await flush();
    expect(s.calls).toBe(1);
    // The one deferred ask runs once the interval is over.
    clock.t = 40;
    await new Promise((r) => setTimeout(r, 60));
    expect(s.calls).toBe(2);
    expect(v.get(5)).toBe("blake3:55");
    v.close();
    v.want();
    await new Promise((r) => setTimeout(r, 60));
    expect(s.calls).toBe(2);
  });
});
