// The native origin client through the facade: ranged GETs from a node:http origin land in the
// store, an origin's refusal surfaces as DF_BACKEND with its status and headers, another version
// than the task's pin as DF_ORIGIN_CHANGED, and bad input or an abort fail with stable codes.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { digest, isNativeError, openOriginBody, openTaskStore, originStats } from "../../src/native/index.js";
import { rejection } from "../helpers/rejection.js";
import { pattern } from "../helpers/native.js";

const TASK = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const PIECE = 128 * 1024;
const CONTENT = PIECE * 3 + 4321;

const DATA = pattern(CONTENT, 2654435761, 15);

const failure = (p: Promise<unknown>) => rejection(p, isNativeError);

describe("native origin fetch", () => {
  let server: Server;
  let addr: string;
  let dir: string;
  const seen: Array<Record<string, string | string[] | undefined>> = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "df-origin-"));
    server = createServer((req, res) => {
      seen.push(req.headers);
      if (req.url === "/missing") return void res.writeHead(404, { "x-why": "no such object" }).end("nope");
      if (req.url === "/hang") return; // never answers
      if (req.url === "/v2") {
        // Version 2 of the content: honours If-Match, and ignores If-Unmodified-Since.
        if (req.headers["if-match"] !== undefined && req.headers["if-match"] !== '"v2"') return void res.writeHead(412, { etag: '"v2"' }).end();
        const [a, b] = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "")?.slice(1).map(Number) ?? [0, 0];
        return void res.writeHead(206, { etag: '"v2"', "last-modified": "Wed, 02 Jul 2025 10:00:00 GMT", "content-range": `bytes ${a}-${b}/${CONTENT}`, "content-length": (b ?? 0) - (a ?? 0) + 1 }).end(DATA.subarray(a, (b ?? 0) + 1));
      }
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
      if (!m) return void res.writeHead(400).end();
      const [a, b] = [Number(m[1]), Number(m[2])];
      res.writeHead(206, { "content-range": `bytes ${a}-${b}/${CONTENT}`, "content-length": b - a + 1 }).end(DATA.subarray(a, b + 1));
    });
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it("fetches every piece with ranged GETs over kept-alive connections", async () => {
    const store = openTaskStore({ dataDir: dir, taskId: TASK, contentLength: CONTENT, pieceLength: PIECE });
    const before = originStats();
    const infos = await Promise.all([0, 1, 2, 3].map((number) => store.fetchFromOrigin({ addr, host: "files.example", path: "/file.bin?v=1", headers: { "user-agent": "df-test", "x-token": "t" }, number })));
    for (const p of infos) expect(p.digest).toBe(digest("crc32", DATA.subarray(p.offset, p.offset + p.length)));
    expect(readFileSync(store.info().contentPath)).toEqual(DATA);
    const after = originStats();
    expect(after.pieces - before.pieces).toBe(4);
    expect(after.bytes - before.bytes).toBe(CONTENT);
    expect(seen.at(-1)).toMatchObject({ host: "files.example", "user-agent": "df-test", "x-token": "t" });
    // Sequential pieces reuse one connection.
    const seq = openTaskStore({ dataDir: dir, taskId: "seq", contentLength: CONTENT, pieceLength: PIECE });
    const s0 = originStats();
    for (const number of [0, 1, 2]) await seq.fetchFromOrigin({ addr, host: "files.example", path: "/file.bin", number });
    expect(originStats().reuses - s0.reuses).toBeGreaterThanOrEqual(2);
  });

  it("rejects an origin's refusal with DF_BACKEND, its status and headers", async () => {
    const store = openTaskStore({ dataDir: dir, taskId: "missing", contentLength: CONTENT, pieceLength: PIECE });
    const e = await failure(store.fetchFromOrigin({ addr, host: "files.example", path: "/missing", number: 0 }));
    expect(e.code).toBe("DF_BACKEND");
    expect(e.message).toBe("origin answered 404");
    expect(e.statusCode).toBe(404);
    expect(e.headers).toMatchObject({ "x-why": "no such object" });
    expect(store.piece(0)).toBeUndefined();
  });

  it("sends the pin as a precondition and rejects another version with DF_ORIGIN_CHANGED, storing nothing", async () => {
    const store = openTaskStore({ dataDir: dir, taskId: "pinned", contentLength: CONTENT, pieceLength: PIECE });
    const base = { addr, host: "files.example", path: "/v2", number: 0 };
    const refused = await failure(store.fetchFromOrigin({ ...base, pin: { etag: '"v1"' } }));
    expect(seen.at(-1)?.["if-match"]).toBe('"v1"');
    expect(refused.code).toBe("DF_ORIGIN_CHANGED");
    expect(refused.message).toBe('origin content changed: it answered 412 Precondition Failed to If-Match "v1"; it now has ETag "v2"');
    expect(refused.statusCode).toBe(412);
    expect(refused.headers).toMatchObject({ etag: '"v2"' });
    const dated = await failure(store.fetchFromOrigin({ ...base, pin: { lastModified: "Tue, 01 Jul 2025 10:00:00 GMT" } }));
    expect(seen.at(-1)?.["if-unmodified-since"]).toBe("Tue, 01 Jul 2025 10:00:00 GMT");
    expect(dated.code).toBe("DF_ORIGIN_CHANGED");
    expect(dated.statusCode).toBe(206);
    expect(store.piece(0)).toBeUndefined();
    const body = await failure(openOriginBody({ addr, host: "files.example", path: "/v2", pin: { etag: '"v1"' }, offset: 0, length: CONTENT, contentLength: CONTENT }));
    expect(body.code).toBe("DF_ORIGIN_CHANGED");
    const info = await store.fetchFromOrigin({ ...base, pin: { etag: '"v2"', lastModified: "Wed, 02 Jul 2025 10:00:00 GMT" } });
    expect(info.digest).toBe(digest("crc32", DATA.subarray(0, PIECE)));
    // The preconditions belong to the pin.
    expect((await failure(store.fetchFromOrigin({ ...base, number: 1, headers: { "If-Match": '"v2"' } }))).code).toBe("DF_INVALID_ARGUMENT");
  });

  it("refuses bad input and stops on abort", async () => {
    const store = openTaskStore({ dataDir: dir, taskId: "bad", contentLength: CONTENT, pieceLength: PIECE });
    const base = { addr, host: "files.example", path: "/file.bin", number: 0 };
    expect((await failure(store.fetchFromOrigin({ ...base, addr: "files.example:80" }))).code).toBe("DF_INVALID_ARGUMENT");
    expect((await failure(store.fetchFromOrigin({ ...base, headers: { "x-a": "1\r\nx-b: 2" } }))).code).toBe("DF_INVALID_ARGUMENT");
    expect((await failure(store.fetchFromOrigin({ ...base, headers: { Range: "bytes=0-1" } }))).code).toBe("DF_INVALID_ARGUMENT");
    expect((await failure(store.fetchFromOrigin({ ...base, path: "/a b" }))).code).toBe("DF_INVALID_ARGUMENT");
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    expect((await failure(store.fetchFromOrigin({ ...base, path: "/hang" }, ac.signal))).code).toBe("DF_ABORTED");
    expect((await failure(store.fetchFromOrigin({ ...base, path: "/hang", readTimeoutMs: 50 }))).code).toBe("DF_TIMEOUT");
  });
});
