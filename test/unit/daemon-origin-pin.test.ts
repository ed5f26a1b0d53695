// Content pinning (#20): which validators pin a task, what every later request carries, how an
// answer is compared with the pin, and which parents a download may take pieces from.
import { describe, expect, it } from "vitest";
import { comparePins, describePin, hasValidator, mismatch, OriginChangedError, pinFromHeaders, preconditionHeaders, totalLength, type OriginPin } from "../../src/daemon/backend/pin.js";
import { BackendError } from "../../src/daemon/backend/types.js";
import { nativeToBackendError } from "../../src/daemon/backend/http.js";
import { TaskPin } from "../../src/daemon/task/pin-state.js";

const LM = "Tue, 01 Jul 2025 10:00:00 GMT";
const LATER = "Tue, 01 Jul 2025 10:01:00 GMT";

describe("pinFromHeaders", () => {
  it("pins a strong ETag and Last-Modified; a weak ETag cannot pin", () => {
    expect(pinFromHeaders({ etag: '"a"', "last-modified": LM }, 10)).toEqual({ etag: '"a"', lastModified: LM, contentLength: 10 });
    expect(pinFromHeaders({ etag: 'W/"a"', "last-modified": LM }, 10)).toEqual({ etag: undefined, lastModified: LM, contentLength: 10 });
    expect(pinFromHeaders({ etag: "unquoted" }, 10).etag).toBeUndefined();
    const none = pinFromHeaders({ "content-length": "1" }, 10);
    expect(hasValidator(none)).toBe(false);
    expect(describePin(none)).toBe("10 bytes without ETag or Last-Modified");
  });
});

describe("preconditionHeaders", () => {
  it("sends If-Match for an ETag, else If-Unmodified-Since, else nothing", () => {
    expect(preconditionHeaders({ etag: '"a"', lastModified: LM, contentLength: 1 })).toEqual({ "if-match": '"a"' });
    expect(preconditionHeaders({ lastModified: LM, contentLength: 1 })).toEqual({ "if-unmodified-since": LM });
    expect(preconditionHeaders({ contentLength: 1 })).toEqual({});
    expect(preconditionHeaders(undefined)).toEqual({});
  });
});

describe("mismatch", () => {
  const pin: OriginPin = { etag: '"a"', lastModified: LM, contentLength: 100 };

  it("accepts an answer of the pinned version, and one that leaves validators out", () => {
    expect(mismatch(pin, 206, { etag: '"a"', "last-modified": LM, "content-range": "bytes 0-9/100" }, 100)).toBeUndefined();
    expect(mismatch(pin, 206, { "content-range": "bytes 0-9/100" }, 100)).toBeUndefined();
    expect(mismatch(pin, 206, { etag: ' "a" ' }, undefined)).toBeUndefined();
  });

  it("names both validators when the ETag, Last-Modified or length differs", () => {
    expect(mismatch(pin, 206, { etag: '"b"' }, 100)).toBe('origin content changed: the task is pinned to ETag "a", the origin now answers ETag "b"');
    expect(mismatch(pin, 206, { etag: '"a"', "last-modified": LATER }, 100)).toBe(`origin content changed: the task is pinned to Last-Modified ${LM}, the origin now answers Last-Modified ${LATER}`);
    expect(mismatch(pin, 206, { etag: '"a"' }, 101)).toBe("origin content changed: it is now 101 bytes long, the task is pinned to 100");
    // A weak tag in the answer is another tag than the strong one pinned.
    expect(mismatch(pin, 206, { etag: 'W/"a"' }, 100)).toMatch(/pinned to ETag "a"/);
  });

  it("reads a 412 as a changed origin, naming what it has now", () => {
    expect(mismatch(pin, 412, { etag: '"b"' }, undefined)).toBe('origin content changed: it answered 412 Precondition Failed to If-Match "a"; it now has ETag "b"');
    expect(mismatch({ lastModified: LM, contentLength: 100 }, 412, { "last-modified": LATER }, undefined)).toBe(`origin content changed: it answered 412 Precondition Failed to If-Unmodified-Since ${LM}; it now has Last-Modified ${LATER}`);
  });

  it("checks the length of an unpinnable task too", () => {
    expect(mismatch({ contentLength: 100 }, 206, { etag: '"x"' }, 100)).toBeUndefined();
    expect(mismatch({ contentLength: 100 }, 200, {}, 99)).toMatch(/now 99 bytes long/);
  });
});

describe("totalLength", () => {
  it("reads Content-Range's total of a 206 and Content-Length of a whole 200", () => {
    expect(totalLength(206, { "content-range": "bytes 0-0/12345" }, false)).toBe(12345);
    expect(totalLength(206, { "content-range": "bytes 0-0/*" }, false)).toBeUndefined();
    expect(totalLength(200, { "content-length": "7" }, true)).toBe(7);
    expect(totalLength(200, { "content-length": "7" }, false)).toBeUndefined();
  });
});

describe("comparePins", () => {
  it("is the same version only when a shared validator agrees and the lengths do", () => {
    expect(comparePins({ etag: '"a"', contentLength: 1 }, { etag: '"a"', lastModified: LM, contentLength: 1 })).toBe("same");
    expect(comparePins({ etag: '"a"', contentLength: 1 }, { etag: '"b"', contentLength: 1 })).toBe("different");
    expect(comparePins({ etag: '"a"', lastModified: LM, contentLength: 1 }, { etag: '"a"', lastModified: LATER, contentLength: 1 })).toBe("different");
    expect(comparePins({ etag: '"a"', contentLength: 1 }, { etag: '"a"', contentLength: 2 })).toBe("different");
    expect(comparePins({ etag: '"a"', contentLength: 1 }, { lastModified: LM, contentLength: 1 })).toBe("unknown");
  });
});

describe("nativeToBackendError", () => {
  it("turns DF_ORIGIN_CHANGED into an OriginChangedError with the origin's answer, never temporary", () => {
    const native = Object.assign(new Error('origin content changed: it answered 412 Precondition Failed to If-Match "a"'), { code: "DF_ORIGIN_CHANGED", statusCode: 412, headers: { etag: '"b"' } });
    const e = nativeToBackendError("http://o/f", native);
    expect(e).toBeInstanceOf(OriginChangedError);
    expect(e).toBeInstanceOf(BackendError);
    expect(e.message).toBe('http://o/f: origin content changed: it answered 412 Precondition Failed to If-Match "a"');
    expect(e.statusCode).toBe(412);
    expect(e.headers).toEqual({ etag: '"b"' });
    expect(e.temporary).toBe(false);
  });
});

describe("TaskPin.admit", () => {
  const a: OriginPin = { etag: '"a"', contentLength: 10 };
  const b: OriginPin = { etag: '"b"', contentLength: 10 };

  it("lets a peer that holds nothing join the first parent's version, then refuses other versions", () => {
    const s = new TaskPin(b, false);
    expect(s.admit("p1", a)).toEqual({ use: true, adopted: true });
    expect(s.pin).toBe(a);
    expect(s.admit("p2", a)).toEqual({ use: true, adopted: false });
    const refused = s.admit("p3", b);
    expect(refused.use).toBe(false);
    expect(refused).toMatchObject({ reason: 'the parent holds ETag "b", this task is pinned to ETag "a"' });
    expect(s.vouched).toBe(true);
    expect([s.decision("p1"), s.decision("p3"), s.decision("p4")]).toEqual([true, false, undefined]);
  });

  it("keeps its own version once settled (pieces held, back-to-source begun, or after a restart)", () => {
    const s = new TaskPin(b, true);
    expect(s.admit("p1", a).use).toBe(false);
    expect(s.pin).toBe(b);
  });

  it("uses a parent that cannot tell its version, but no longer vouches for the pieces held", () => {
    const s = new TaskPin(b, false);
    expect(s.admit("old-peer", undefined)).toEqual({ use: true, adopted: false });
    expect(s.settled).toBe(true);
    expect(s.vouched).toBe(false);
    // Settled on its own version now: a parent of another one is refused.
    expect(s.admit("p2", a).use).toBe(false);
    const t = new TaskPin(b, true);
    expect(t.admit("no-validators", { contentLength: 10 }).use).toBe(true);
    expect(t.vouched).toBe(false);
  });

  it("refuses a parent whose task has another length", () => {
    const s = new TaskPin(b, false);
    expect(s.admit("p", { etag: '"b"', contentLength: 11 })).toEqual({ use: false, reason: "the parent's task is 11 bytes long, this one 10" });
    expect(s.settled).toBe(false);
  });
});
