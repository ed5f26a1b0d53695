// An origin that closes the connection right after the last byte, read by a consumer slower
// than the network (the disk, a slow peer): undici's parser is paused under backpressure when
// the FIN arrives. Unpatched undici 7 throws an uncatchable AssertionError from the socket's
// 'end' handler there (nodejs/undici#5360), which killed the daemon and hung the download
// (CI, origin-unknown-length, close-delimited case). patches/undici+*.patch completes the
// message instead; a truncated body must still fail, never pass as whole.
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpBackend } from "../../src/daemon/backend/http.js";

type Framing = "close" | "length" | "chunked" | "short-length" | "short-chunked";

/** One body per framing, then FIN; 64 KiB is the body stream's high-water mark, the size that pauses on the last chunk. */
function startRawOrigin(size: number): Promise<{ server: Server; url: (f: Framing) => string; body: Buffer }> {
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i++) body[i] = (i * 31 + 7) & 0xff;
  const server = createServer((sock) => {
    sock.once("data", (req) => {
      const framing = /GET \/(\S+) /.exec(req.toString("latin1"))?.[1] as Framing;
      let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n";
      if (framing === "length") head += `Content-Length: ${size}\r\n`;
      if (framing === "short-length") head += `Content-Length: ${size + 10}\r\n`;
      if (framing === "chunked" || framing === "short-chunked") head += "Transfer-Encoding: chunked\r\n";
      sock.write(`${head}\r\n`);
      if (framing === "chunked" || framing === "short-chunked") {
        sock.write(`${size.toString(16)}\r\n`);
        sock.write(body);
        if (framing === "chunked") sock.write("\r\n0\r\n\r\n");
      } else {
        sock.write(body);
      }
      sock.end();
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      resolve({ server, body, url: (f) => `http://127.0.0.1:${port}/${f}` });
    });
  });
}

/** Reads a body only after the origin has sent everything and closed, one chunk per turn. */
async function readLate(body: AsyncIterable<Buffer>): Promise<Buffer> {
  await new Promise((r) => setTimeout(r, 300));
  const parts: Buffer[] = [];
  for await (const chunk of body) {
    parts.push(chunk);
    await new Promise((r) => setImmediate(r));
  }
  return Buffer.concat(parts);
}

describe("http backend: origin closes while the body waits for its reader", () => {
  for (const size of [1, 64 * 1024, 64 * 1024 + 1, 200_000]) {
    describe(`${size} bytes`, () => {
      let origin: Awaited<ReturnType<typeof startRawOrigin>>;
      const backend = new HttpBackend({ maxRetries: 0 });
      beforeAll(async () => {
        origin = await startRawOrigin(size);
      });
      afterAll(async () => {
        await backend.close();
        origin.server.close();
      });

      for (const framing of ["close", "length", "chunked"] as const) {
        it(`reads a ${framing}-framed body whole`, async () => {
          const res = await backend.get({ url: origin.url(framing), headers: {} });
          const got = await readLate(res.body as AsyncIterable<Buffer>);
          expect(got.length).toBe(size);
          expect(got.equals(origin.body)).toBe(true);
        });
      }

      it("fails a body shorter than its Content-Length", async () => {
        const res = await backend.get({ url: origin.url("short-length"), headers: {} });
        await expect(readLate(res.body as AsyncIterable<Buffer>)).rejects.toThrow(/content-length/i);
      });

      it("fails a chunked body cut before its last chunk", async () => {
        const res = await backend.get({ url: origin.url("short-chunked"), headers: {} });
        await expect(readLate(res.body as AsyncIterable<Buffer>)).rejects.toThrow(/EOF/);
      });
    });
  }
});
