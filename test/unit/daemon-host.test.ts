import { describe, expect, it } from "vitest";
import { buildHost, HOST_TYPE } from "../../src/daemon/host.js";
import { Host } from "../../src/gen/common/v2/common.js";

const identity = { ip: "10.0.0.7", hostname: "node-7", seedPeer: false, seedType: "super" as const, idc: "idc-1", location: "eu|de", uploadPort: 4000, piecePort: 4005, proxyPort: 4001, schedulerClusterId: 1, disableShared: false, maxTxBandwidth: 125_000_000 };

describe("buildHost", () => {
  it("encodes with a fractional sampled upload rate (uint64 fields must be whole)", () => {
    const host = buildHost(identity, 4190113.886);
    expect(() => Host.encode(host).finish()).not.toThrow();
    expect(host.network?.txBandwidth).toBe(4190114);
  });

  it("uses Dragonfly's id and host type rules", () => {
    expect(buildHost(identity, 0)).toMatchObject({ id: "10.0.0.7-node-7", type: HOST_TYPE.normal, port: 4000, downloadPort: 4000 });
    expect(buildHost({ ...identity, seedPeer: true }, 0)).toMatchObject({ id: "10.0.0.7-node-7-seed", type: HOST_TYPE.super });
  });
});
