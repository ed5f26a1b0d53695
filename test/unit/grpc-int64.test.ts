// 64-bit integers from real Dragonfly peers must decode without failing the request: the Rust
// dfdaemon announces `memory.cgroup.limit = 9223372036854771712` (cgroup "unlimited"), and
// any uint64 statistic may be near 2^64. The generated decoders clamp to
// Number.MAX_SAFE_INTEGER (see scripts/gen-proto.mjs) instead of throwing. The messages are
// built with @bufbuild/protobuf's BinaryWriter because the generated encoders cannot carry
// such values.
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { Piece } from "../../src/gen/common/v2/common.js";
import { SyncPiecesResponse } from "../../src/gen/dfdaemon/v2/dfdaemon.js";
import { KeepAliveRequest, ManagerService } from "../../src/gen/manager/v2/manager.js";
import { AnnounceHostRequest, SchedulerService } from "../../src/gen/scheduler/v2/scheduler.js";

const U64_MAX = 2n ** 64n - 1n;
const CGROUP_UNLIMITED = 9223372036854771712n; // i64::MAX rounded down to a page, as Linux reports it
const MAX = Number.MAX_SAFE_INTEGER;

/** Field tag for a varint (wire type 0) or length-delimited (wire type 2) field. */
const varint = (field: number) => (field << 3) | 0;
const lengthDelimited = (field: number) => (field << 3) | 2;

/** scheduler.v2.AnnounceHostRequest as the Rust dfdaemon sends it on a host without a memory limit. */
function rustAnnounceHost(): Buffer {
  const w = new BinaryWriter();
  w.uint32(lengthDelimited(1)).fork(); // host
  w.uint32(lengthDelimited(1)).string("10.0.0.9-rust-host");
  w.uint32(lengthDelimited(4)).string("10.0.0.9");
  w.uint32(varint(5)).int32(4000); // port
  w.uint32(lengthDelimited(12)).fork(); // cpu
  w.uint32(lengthDelimited(6)).fork(); // cpu.cgroup
  w.uint32(varint(1)).uint64(U64_MAX); // period
  w.uint32(varint(2)).int64(-1n); // quota: unlimited
  w.join().join();
  w.uint32(lengthDelimited(13)).fork(); // memory
  w.uint32(varint(1)).uint64(U64_MAX); // total
  w.uint32(varint(2)).uint64(U64_MAX); // available
  w.uint32(varint(3)).uint64(4096n); // used: small values stay exact
  w.uint32(varint(6)).uint64(U64_MAX); // free
  w.uint32(lengthDelimited(7)).fork(); // memory.cgroup
  w.uint32(varint(1)).int64(CGROUP_UNLIMITED); // limit
  w.uint32(varint(2)).uint64(U64_MAX); // usage
  w.join().join();
  w.uint32(lengthDelimited(14)).fork(); // network
  w.uint32(varint(9)).uint64(U64_MAX); // max_rx_bandwidth
  w.uint32(varint(10)).uint64(U64_MAX); // rx_bandwidth
  w.uint32(varint(11)).uint64(BigInt(MAX)); // max_tx_bandwidth: the largest exact value
  w.uint32(varint(12)).uint64(BigInt(MAX) + 1n); // tx_bandwidth: the first clamped one
  w.join();
  w.uint32(lengthDelimited(15)).fork(); // disk
  for (const field of [1, 2, 3, 5, 6, 7, 9, 10]) w.uint32(varint(field)).uint64(U64_MAX);
  w.join();
  w.uint32(varint(17)).uint64(U64_MAX); // scheduler_cluster_id
  w.join();
  w.uint32(lengthDelimited(2)).fork().uint32(varint(1)).int64(300n).join(); // interval: 300 s
  return Buffer.from(w.finish());
}

describe("int64/uint64 decoding clamps instead of failing the request", () => {
  it("decodes the Rust dfdaemon's AnnounceHostRequest through the service definition grpc-js uses", () => {
    const req = SchedulerService.announceHost.requestDeserialize(rustAnnounceHost());
    expect(req.host?.id).toBe("10.0.0.9-rust-host");
    expect(req.host?.port).toBe(4000);
    expect(req.host?.memory?.cgroup?.limit).toBe(MAX);
    expect(req.host?.memory?.cgroup?.usage).toBe(MAX);
    expect(req.host?.memory?.total).toBe(MAX);
    expect(req.host?.memory?.available).toBe(MAX);
    expect(req.host?.memory?.used).toBe(4096);
    expect(req.host?.memory?.free).toBe(MAX);
    expect(req.host?.cpu?.cgroup).toMatchObject({ period: MAX, quota: -1 });
    expect(req.host?.network).toMatchObject({ maxRxBandwidth: MAX, rxBandwidth: MAX, maxTxBandwidth: MAX, txBandwidth: MAX });
    expect(req.host?.disk).toMatchObject({ total: MAX, free: MAX, used: MAX, inodesTotal: MAX, inodesUsed: MAX, inodesFree: MAX, readBandwidth: MAX, writeBandwidth: MAX });
    expect(req.host?.schedulerClusterId).toBe(MAX);
    expect(req.interval).toEqual({ seconds: 300, nanos: 0 });
    // The clamped message still encodes (and round-trips) with the generated encoder.
    expect(AnnounceHostRequest.decode(AnnounceHostRequest.encode(req).finish())).toEqual(req);
  });

  it("clamps negative int64 below Number.MIN_SAFE_INTEGER", () => {
    const w = new BinaryWriter();
    w.uint32(lengthDelimited(1)).fork().uint32(lengthDelimited(13)).fork().uint32(lengthDelimited(7)).fork();
    w.uint32(varint(1)).int64(-(2n ** 63n)); // memory.cgroup.limit = i64::MIN
    w.join().join().join();
    expect(AnnounceHostRequest.decode(w.finish()).host?.memory?.cgroup?.limit).toBe(Number.MIN_SAFE_INTEGER);
  });

  it("common.v2.Piece: huge offset/length and a Duration with huge seconds", () => {
    const w = new BinaryWriter();
    w.uint32(varint(1)).uint32(7); // number
    w.uint32(varint(3)).uint64(U64_MAX); // offset
    w.uint32(varint(4)).uint64(U64_MAX); // length
    w.uint32(lengthDelimited(8)).fork().uint32(varint(1)).int64(2n ** 63n - 1n).join(); // cost.seconds
    const piece = Piece.decode(w.finish());
    expect(piece).toMatchObject({ number: 7, offset: MAX, length: MAX, cost: { seconds: MAX, nanos: 0 } });
  });

  it("dfdaemon.v2.SyncPiecesResponse: huge offset/length", () => {
    const w = new BinaryWriter();
    w.uint32(varint(1)).uint32(3);
    w.uint32(varint(2)).uint64(U64_MAX);
    w.uint32(varint(3)).uint64(U64_MAX);
    w.uint32(lengthDelimited(4)).string("10.0.0.9");
    expect(SyncPiecesResponse.decode(w.finish())).toMatchObject({ number: 3, offset: MAX, length: MAX, ip: "10.0.0.9" });
  });

  it("manager.v2.KeepAliveRequest: huge cluster_id through the service definition", () => {
    const w = new BinaryWriter();
    w.uint32(lengthDelimited(2)).string("seed-1");
    w.uint32(varint(3)).uint64(U64_MAX);
    const req = ManagerService.keepAlive.requestDeserialize(Buffer.from(w.finish()));
    expect(req).toMatchObject({ hostname: "seed-1", clusterId: MAX });
  });

  it("values up to Number.MAX_SAFE_INTEGER still encode and decode exactly", () => {
    for (const clusterId of [0, 1, 2 ** 32 + 1, MAX - 1, MAX]) {
      const bytes = KeepAliveRequest.encode(KeepAliveRequest.fromPartial({ clusterId })).finish();
      expect(KeepAliveRequest.decode(bytes).clusterId).toBe(clusterId);
    }
  });
});
