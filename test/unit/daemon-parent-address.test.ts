import { describe, expect, it } from "vitest";
import { parentAddress } from "../../src/daemon/task/manager.js";

const holder = { peerId: "p", hostId: "h", ip: "10.0.0.2", tcpPort: 4005, quicPort: 4006 };

describe("parentAddress", () => {
  it("asks a parent over TCP unless download.protocol is quic", () => {
    expect(parentAddress(holder)).toEqual({ ip: "10.0.0.2", port: 4005 });
    expect(parentAddress(holder, "tcp")).toEqual({ ip: "10.0.0.2", port: 4005 });
  });

  it("asks a parent over QUIC at its QUIC port with download.protocol quic", () => {
    expect(parentAddress(holder, "quic")).toEqual({ ip: "10.0.0.2", port: 4006, protocol: "quic" });
  });

  it("falls back to TCP for a parent that announced no QUIC port", () => {
    expect(parentAddress({ ...holder, quicPort: 0 }, "quic")).toEqual({ ip: "10.0.0.2", port: 4005 });
  });
});
