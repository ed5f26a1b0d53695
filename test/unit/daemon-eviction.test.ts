// Which cached tasks go when the disk is short (issue #20): the one eviction order shared by the
// watermark GC and by a download that hit ENOSPC, and how much `makeRoom` evicts.
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { evictionOrder, makeRoom, type TaskUsage } from "../../src/daemon/gc.js";
import type { Storage } from "../../src/daemon/storage/storage.js";
import type { LocalTaskState, TaskStore } from "../../src/daemon/storage/types.js";

const MiB = 1024 * 1024;

function task(id: string, state: LocalTaskState, updatedAt: number, contentLength = 10 * MiB, tier: "disk" | "memory" = "disk"): TaskStore {
  return { id, meta: { id, state, updatedAt, contentLength, tier } } as unknown as TaskStore;
}

const nothingInUse: TaskUsage = { isInUse: () => false };
const inUse = (...ids: string[]): TaskUsage => ({ isInUse: (id) => ids.includes(id) });

/** A storage of `tasks` on a filesystem with `free` bytes; deleting a task frees its length. */
function fakeStorage(tasks: TaskStore[], free: number) {
  const held = new Map(tasks.map((t) => [t.id, t]));
  const state = { free, deleted: [] as string[] };
  const storage = {
    rootFor: (tier: string) => `/data/${tier}`,
    list: () => [...held.values()],
    delete: (id: string) => {
      state.free += held.get(id)?.meta.contentLength ?? 0;
      held.delete(id);
      state.deleted.push(id);
      return Promise.resolve();
    },
  } as unknown as Storage;
  return { storage, state, measure: () => Promise.resolve(state.free) };
}

describe("evictionOrder", () => {
  it("puts failed tasks kept for a resume first, then completed ones, each least recently used first", () => {
    const order = evictionOrder([task("new", "succeeded", 30), task("failed-new", "failed", 40), task("old", "succeeded", 10), task("failed-old", "failed", 20)], nothingInUse);
    expect(order.map((t) => t.id)).toEqual(["failed-old", "failed-new", "old", "new"]);
  });

  it("never lists a task in use (downloading, or uploaded to children) or one whose record says running", () => {
    const order = evictionOrder([task("busy", "succeeded", 1), task("crashed", "running", 2), task("free", "succeeded", 3)], inUse("busy"));
    expect(order.map((t) => t.id)).toEqual(["free"]);
  });
});

describe("makeRoom", () => {
  const three = () => [task("a", "succeeded", 1), task("b", "succeeded", 2), task("c", "succeeded", 3)];

  it("evicts nothing when the room is already free", async () => {
    const { storage, state, measure } = fakeStorage(three(), 20 * MiB);
    const room = await makeRoom(storage, nothingInUse, "disk", 16 * MiB, "new", silentLogger(), measure);
    expect(room).toEqual({ free: 20 * MiB, evicted: [], enough: true });
    expect(state.deleted).toEqual([]);
  });

  it("evicts the least recently used tasks until the bytes are free, and no more", async () => {
    const { storage, state, measure } = fakeStorage(three(), 5 * MiB);
    const room = await makeRoom(storage, nothingInUse, "disk", 24 * MiB, "new", silentLogger(), measure);
    expect(room).toEqual({ free: 25 * MiB, evicted: ["a", "b"], enough: true });
    expect(state.deleted).toEqual(["a", "b"]);
  });

  it("skips a task in use, the task asking for room and tasks of the other tier", async () => {
    const tasks = [task("a", "succeeded", 1), task("mem", "succeeded", 2, 10 * MiB, "memory"), task("new", "failed", 3), task("b", "succeeded", 4), task("c", "succeeded", 5)];
    const { storage, state, measure } = fakeStorage(tasks, 5 * MiB);
    const room = await makeRoom(storage, inUse("a"), "disk", 12 * MiB, "new", silentLogger(), measure);
    expect(room.evicted).toEqual(["b"]);
    expect(state.deleted).toEqual(["b"]);
  });

  it("evicts nothing when even every candidate could not make the room (a task larger than the disk)", async () => {
    const { storage, state, measure } = fakeStorage(three(), 5 * MiB);
    const room = await makeRoom(storage, nothingInUse, "disk", 64 * MiB, "new", silentLogger(), measure);
    expect(room).toEqual({ free: 5 * MiB, evicted: [], enough: false });
    expect(state.deleted).toEqual([]);
  });
});
