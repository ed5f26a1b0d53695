import { describe, expect, it } from "vitest";
import { filterQueryParams, hostId, isTaskId, peerId, taskIdFromBlobUrl, taskIdFromContent, taskIdFromUrl } from "../../src/common/ids.js";
import { pieceCount, pieceLengthFor, pieceRange } from "../../src/common/piece.js";

// Vectors published with Dragonfly's Rust client (id_generator and url tests).
describe("task id", () => {
  const cases: Array<[Parameters<typeof taskIdFromUrl>[0], string]> = [
    [{ url: "https://example.com", pieceLength: 1024, tag: "foo", application: "bar", revision: "v1.0" }, "5844f27a257287e9b734256bb25603d8005422ced8c0377f15063ec11963b25f"],
    [{ url: "https://example.com", tag: "foo", application: "bar" }, "06408fbf247ddaca478f8cb9565fe5591c28efd0994b8fea80a6a87d3203c5ca"],
    [{ url: "https://example.com", tag: "foo" }, "3c3f230ef9f191dd2821510346a7bc138e4894bee9aee184ba250a3040701d2a"],
    [{ url: "https://example.com", application: "bar" }, "c9f9261b7305c24371244f9f149f5d4589ed601348fdf22d7f6f4b10658fdba2"],
    [{ url: "https://example.com", pieceLength: 1024 }, "9f7c9aafbc6f30f8f41a96ca77eeae80c5b60964b3034b0ee43ccf7b2f9e52b8"],
    [{ url: "https://example.com?foo=foo&bar=bar", filteredQueryParams: ["foo", "bar"] }, "457b4328cde278e422c9e243f7bfd1e97f511fec43a80f535cf6b0ef6b086776"],
    [{ url: "https://example.com/file.txt?z=9&b=2&a=1", tag: "foo", application: "bar", filteredQueryParams: ["z"] }, "8b3f6e9b9b8fe20903bced565cfd1d0aaef354a4c17573f0c2c1979210443f9d"],
    [{ url: "https://example.com/file.txt?k=a b&m=x*y&n=c~d", pieceLength: 1024, filteredQueryParams: ["none"] }, "6196a6846023f6d3c1e4d30f6c86f3d4186e4c664a33e5692b0e04e49b26a9af"],
    [{ url: "https://example.com/file.txt?a=1&b=2", tag: "foo", filteredQueryParams: ["a", "b"] }, "c8f4b41117329d54af920010394f6f607bac707e933ab2f18d372e3dd4c7fcb3"],
    [{ url: "https://example.com/file.txt?b=2&a=1" }, "980ee327518ccc5a7c30703e1a2232e8ba9047b39431f940636c85b6146f8b9a"],
    [{ url: "https://example.com", revision: "v1.0" }, "b171331534b80e0bf91da38ebbfcdbf4d177898f4b9beac44f14733e3f004d4e"],
  ];
  it.each(cases)("matches Dragonfly for %j", (params, expected) => {
    expect(taskIdFromUrl(params)).toBe(expected);
  });

  it("hashes explicit content", () => {
    expect(taskIdFromContent("This is a test file")).toBe("e2d0fe1585a63ec6009c8016ff8dda8b17719a637405a4e23c0ff81339148249");
  });

  it("uses the blob digest for registry blob URLs", () => {
    const hex = "b2c366cce7e68013d5441c6326d5a3e1b12aeb5ed58564d0fd3fa089bc29cb6e";
    expect(taskIdFromBlobUrl(`http://registry.example.com/v2/library/ubuntu/blobs/sha256:${hex}`)).toBe(hex);
    expect(taskIdFromBlobUrl(`http://localhost:5000/v2/myrepo/blobs/sha256:${hex}?ns=docker.io`)).toBe(hex);
    for (const bad of ["https://example.com/file.txt", "http://r/v2/u/blobs/sha256:abc", "http://r/v2/u/blobs/md5:8a04994a666b4e4b20a2fd9e5a44f44c"]) {
      expect(() => taskIdFromBlobUrl(bad)).toThrow(/not an OCI blob URL/);
    }
  });

  it("canonicalises query strings like Dragonfly", () => {
    expect(filterQueryParams("https://example.com/file.txt?b=2&a=1&b=1", ["c"])).toBe("https://example.com/file.txt?a=1&b=2&b=1");
    expect(filterQueryParams("https://example.com?foo=foo", ["foo"])).toBe("https://example.com");
    expect(filterQueryParams("https://example.com/file.txt?k=a b&m=x*y&n=c~d", ["none"])).toBe("https://example.com/file.txt?k=a+b&m=x%2Ay&n=c~d");
    expect(filterQueryParams("http://www.xx.yy/path?u=f&x=y&m=z&x=s#size", ["x", "m"])).toBe("http://www.xx.yy/path?u=f#size");
    expect(filterQueryParams("https://example.com/file.txt?a=1;x&b=2", ["none"])).toBe("https://example.com/file.txt?b=2");
    expect(() => filterQueryParams(":error_url", ["x"])).toThrow(/invalid URL/);
  });

  it("recognises task ids", () => {
    expect(isTaskId("a".repeat(64))).toBe(true);
    expect(isTaskId("../../etc/passwd")).toBe(false);
  });
});

describe("host and peer ids", () => {
  it("follow Dragonfly's shape", () => {
    expect(hostId("127.0.0.1", "localhost", false)).toBe("127.0.0.1-localhost");
    expect(hostId("127.0.0.1", "localhost", true)).toBe("127.0.0.1-localhost-seed");
    expect(peerId("127.0.0.1", "localhost", true)).toMatch(/^127\.0\.0\.1-localhost-[0-9a-f-]{36}-seed$/);
  });
});

describe("piece layout", () => {
  it("clamps the piece length to 4–64 MiB and rounds to a power of two", () => {
    expect(pieceLengthFor(0)).toBe(4 << 20);
    expect(pieceLengthFor(1 << 30)).toBe(4 << 20);
    expect(pieceLengthFor(3 * 2 ** 30)).toBe(8 << 20);
    expect(pieceLengthFor(100 * 2 ** 30)).toBe(64 << 20);
  });
  it("gives the last piece the remainder and refuses pieces past the end", () => {
    expect(pieceCount(10, 4)).toBe(3);
    expect(pieceRange(2, 10, 4)).toEqual({ number: 2, offset: 8, length: 2 });
    expect(() => pieceRange(3, 10, 4)).toThrow(RangeError);
  });
});
