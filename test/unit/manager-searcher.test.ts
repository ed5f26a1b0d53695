import { describe, expect, it } from "vitest";
import { cidrScore, evaluate, hostnameScore, idcScore, locationScore, rankClusters } from "../../src/manager/grpc/searcher.js";

describe("manager searcher (Dragonfly's cluster scoring)", () => {
  it("scores CIDR membership, IPv4-mapped addresses included", () => {
    expect(cidrScore("10.1.2.3", ["192.168.0.0/16", "10.0.0.0/8"])).toBe(1);
    expect(cidrScore("::ffff:10.1.2.3", ["10.0.0.0/8"])).toBe(1);
    expect(cidrScore("11.1.2.3", ["10.0.0.0/8"])).toBe(0);
    expect(cidrScore("fd00::5", ["fd00::/8"])).toBe(1);
    expect(cidrScore("10.1.2.3", ["garbage", "10.0.0.0/abc"])).toBe(0);
    expect(cidrScore("not-an-ip", ["0.0.0.0/0"])).toBe(0);
  });
  it("scores hostname regexes and skips broken ones", () => {
    expect(hostnameScore("node-17.dc1", ["^node-\\d+\\.dc1$"])).toBe(1);
    expect(hostnameScore("node-17.dc2", ["(", "dc1"])).toBe(0);
    expect(hostnameScore("", [".*"])).toBe(0);
  });
  it("scores IDC exactly or against any | element, case-insensitively", () => {
    expect(idcScore("IDC-A", "idc-a")).toBe(1);
    expect(idcScore("idc-b", "idc-a|idc-b")).toBe(1);
    expect(idcScore("idc-c", "idc-a|idc-b")).toBe(0);
    expect(idcScore("", "idc-a")).toBe(0);
  });
  it("scores location by common prefix elements out of 5", () => {
    expect(locationScore("asia|china|beijing", "asia|china|beijing")).toBe(1);
    expect(locationScore("asia|china|beijing", "asia|china|shanghai")).toBeCloseTo(2 / 5);
    expect(locationScore("asia|japan", "europe|japan")).toBe(0);
    expect(locationScore("a|b|c|d|e|f", "a|b|c|d|e|g")).toBeCloseTo(1);
  });
  it("weights the parts 0.3 / 0.3 / 0.25 / 0.14 / 0.01", () => {
    const all = { id: 1, is_default: true, scopes: { cidrs: ["10.0.0.0/8"], hostnames: ["^h$"], idc: "i", location: "l" } };
    expect(evaluate({ ip: "10.0.0.1", hostname: "h", idc: "i", location: "l" }, all)).toBeCloseTo(1);
    expect(evaluate({ ip: "10.0.0.1", hostname: "x" }, { ...all, is_default: false })).toBeCloseTo(0.3);
    expect(evaluate({ ip: "1.1.1.1", hostname: "x", idc: "i" }, all)).toBeCloseTo(0.26);
  });
  it("ranks best first and keeps ties in order", () => {
    const clusters = [
      { id: 1, is_default: true, scopes: {} },
      { id: 2, is_default: false, scopes: { idc: "east" } },
      { id: 3, is_default: false, scopes: { cidrs: ["10.0.0.0/8"] } },
      { id: 4, is_default: false, scopes: {} },
      { id: 5, is_default: false, scopes: {} },
    ];
    expect(rankClusters(clusters, { ip: "10.2.3.4", hostname: "n", idc: "east" }).map((c) => c.id)).toEqual([3, 2, 1, 4, 5]);
    expect(rankClusters(clusters, { ip: "8.8.8.8", hostname: "n" }).map((c) => c.id)).toEqual([1, 2, 3, 4, 5]);
  });
});
