import { describe, expect, it } from "vitest";
import { buildHost, HOST_REUSE_MS, HOST_TYPE, reusedHost } from "../../src/daemon/host.js";
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

describe("reusedHost", () => {
  it("builds once per window for the same ports, again when a port or the window changes", () => {
    let t = 0;
    let ports = "0/0/4005";
    let builds = 0;
    const host = reusedHost(
      () => ports,
      () => {
        builds++;
        return buildHost({ ...identity, uploadPort: Number(ports.split("/")[0]) }, builds);
      },
      () => t,
    );
    const first = host();
    t += HOST_REUSE_MS - 1;
    expect(host()).toBe(first);
    expect(builds).toBe(1);
    ports = "4000/0/4005"; // the upload server started listening
    expect(host().port).toBe(4000);
    expect(builds).toBe(2);
    t += HOST_REUSE_MS;
    expect(host().network?.txBandwidth).toBe(3);
  });
});
