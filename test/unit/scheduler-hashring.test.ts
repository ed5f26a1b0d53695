import { describe, expect, it } from "vitest";
import { HashRing } from "../../src/common/hashring.js";

// Expected values produced by stathat.com/c/consistent v1.0.0 (the library Dragonfly's
// scheduler uses for seed peers) with the same four members, default 20 replicas.
const MEMBERS = ["10.0.0.1:4000", "10.0.0.2:4000", "10.0.0.3:4000", "192.168.1.7:65002"];
const GO_VECTORS: Record<string, string> = {
  a: "10.0.0.1:4000",
  "task-1": "10.0.0.2:4000",
  "5844f27a257287e9b734256bb25603d8005422ced8c0377f15063ec11963b25f": "10.0.0.2:4000",
  "06408fbf247ddaca478f8cb9565fe5591c28efd0994b8fea80a6a87d3203c5ca": "10.0.0.1:4000",
  hello: "192.168.1.7:65002",
  zzz: "192.168.1.7:65002",
};

describe("HashRing", () => {
  it("places keys exactly like the Go consistent-hash library", () => {
    const ring = new HashRing(MEMBERS);
    for (const [key, member] of Object.entries(GO_VECTORS)) expect(ring.get(key), key).toBe(member);
  });

  it("does not depend on insertion order", () => {
    const a = new HashRing(MEMBERS);
    const b = new HashRing([...MEMBERS].reverse());
    for (let i = 0; i < 200; i++) expect(b.get(`k${i}`)).toBe(a.get(`k${i}`));
  });

  it("moves only the keys of a removed member", () => {
    const ring = new HashRing(MEMBERS);
    const before = new Map<string, string | undefined>();
    for (let i = 0; i < 500; i++) before.set(`k${i}`, ring.get(`k${i}`));
    ring.remove("10.0.0.3:4000");
    for (const [k, owner] of before) {
      const now = ring.get(k);
      if (owner === "10.0.0.3:4000") expect(now).not.toBe("10.0.0.3:4000");
      else expect(now).toBe(owner);
    }
  });

  it("answers undefined on an empty ring and rejects bad replica counts", () => {
    expect(new HashRing().get("x")).toBeUndefined();
    expect(() => new HashRing([], 0)).toThrow(/replicas/);
  });

  it("set() replaces the membership", () => {
    const ring = new HashRing(["a:1"]);
    ring.set(MEMBERS);
    expect(ring.size).toBe(4);
    expect(ring.has("a:1")).toBe(false);
    expect(ring.get("hello")).toBe("192.168.1.7:65002");
  });
});
