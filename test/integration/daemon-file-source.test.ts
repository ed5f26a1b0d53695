// file:// back-to-source (issue 23): a local dfget seeds a task from a path on the host; the
// bytes then go peer to peer like any other task. A remote party (the scheduler's seed trigger)
// cannot make a daemon read its files, files other users may not read are refused unless
// allowed, and a file written while it is read fails the task instead of mixing two versions.
import { afterEach, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { FileBackend, fileEtag } from "../../src/daemon/backend/file.js";
import { OriginChangedError } from "../../src/daemon/backend/pin.js";
import { BackendError } from "../../src/daemon/backend/types.js";
import { Download } from "../../src/gen/common/v2/common.js";
import { makeContent } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
const running: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close().catch(() => undefined);
  cleanupTempDirs();
});

/** A world-readable file under a world-searchable directory. */
function publicFile(name: string, content: Buffer): string {
  const dir = tempDir("file-src");
  chmodSync(dir, 0o755);
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o644 });
  return path;
}

async function drain(body: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("file:// back-to-source", () => {
  it("seeds a task from a local file, and a second peer gets it from the first, not from its disk", async () => {
    const content = makeContent(24 * MiB, 3);
    const path = publicFile("model.bin", content);
    const url = pathToFileURL(path).href;
    const scheduler = await startTestScheduler();
    running.push(scheduler);
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    const a = await startTestDaemon({ name: "file-a", schedulers: [addr] });
    running.push(a);
    const outA = join(tempDir("out-a"), "model.bin");
    await downloadVia(a.socketPath, { url, outputPath: outA });
    expect(sha256File(outA)).toBe(createHash("sha256").update(content).digest("hex"));
    const task = a.storage.list()[0]!;
    expect(task.meta.pin?.etag).toBe(fileEtag(statSync(path, { bigint: true })));
    expect(task.finished().every((p) => p.parentId === "")).toBe(true);

    // Peer B asks for the same URL: the scheduler hands it A as the parent.
    const b = await startTestDaemon({ name: "file-b", schedulers: [addr] });
    running.push(b);
    const outB = join(tempDir("out-b"), "model.bin");
    await downloadVia(b.socketPath, { url, outputPath: outB });
    expect(sha256File(outB)).toBe(sha256File(outA));
    const fromPeers = b.storage.list()[0]!.finished();
    expect(fromPeers.length).toBe(task.meta.pieceCount);
    expect(fromPeers.every((p) => p.parentId !== "")).toBe(true);
  });

  it("is not offered to a remote party's download (the seed trigger) and names the problem for a local one", async () => {
    const daemon = await startTestDaemon({ name: "file-local", schedulers: [] });
    running.push(daemon);
    const missing = pathToFileURL(join(tempDir("nothing"), "absent.bin")).href;
    const out = join(tempDir("out-missing"), "f");
    await expect(downloadVia(daemon.socketPath, { url: missing, outputPath: out })).rejects.toThrow(/absent\.bin: no such file/);
    expect(existsSync(out)).toBe(false);
    expect(daemon.storage.list()).toHaveLength(0);
    await expect(daemon.tasks.download({ download: Download.fromPartial({ url: missing }), remote: true })).rejects.toThrow(/unsupported URL scheme "file"/);
  });
});

describe("FileBackend", () => {
  it("refuses files other users may not read, unless allowPrivate", async () => {
    const path = publicFile("secret.bin", Buffer.from("secret"));
    chmodSync(path, 0o600);
    const url = pathToFileURL(path).href;
    await expect(new FileBackend({ allowPrivate: false }).stat({ url, headers: {} })).rejects.toThrow(/not readable by every user \(mode 600\)/);
    expect((await new FileBackend({ allowPrivate: true }).stat({ url, headers: {} })).contentLength).toBe(6);
    const hidden = join(tempDir("hidden"), "sub");
    mkdirSync(hidden, { mode: 0o700 });
    writeFileSync(join(hidden, "f"), "x", { mode: 0o644 });
    await expect(new FileBackend({ allowPrivate: false }).stat({ url: pathToFileURL(join(hidden, "f")).href, headers: {} })).rejects.toThrow(/is not searchable by every user/);
  });

  it("serves ranges, refuses directories, other hosts and a file of another version", async () => {
    const content = makeContent(3 * MiB, 9);
    const path = publicFile("data.bin", content);
    const url = pathToFileURL(path).href;
    const fb = new FileBackend({ allowPrivate: false });
    const st = await fb.stat({ url, headers: {} });
    const pin = { etag: st.headers.etag, contentLength: 3 * MiB };
    const part = await fb.get({ url, headers: {}, pin, range: { start: MiB + 5, length: MiB } });
    expect(part.statusCode).toBe(206);
    expect((await drain(part.body)).equals(content.subarray(MiB + 5, 2 * MiB + 5))).toBe(true);
    await expect(fb.get({ url, headers: {}, range: { start: 3 * MiB - 1, length: 2 } })).rejects.toSatisfy((e: unknown) => e instanceof BackendError && e.statusCode === 416);
    await expect(fb.stat({ url: pathToFileURL(tempDir("d")).href, headers: {} })).rejects.toThrow(/is a directory/);
    await expect(fb.stat({ url: "file://example.com/etc/hosts", headers: {} })).rejects.toThrow(/not on example\.com/);

    // Written in place after the pin: another version, refused before a byte is read.
    writeFileSync(path, makeContent(3 * MiB, 10), { mode: 0o644 });
    await expect(fb.get({ url, headers: {}, pin, range: { start: 0, length: MiB } })).rejects.toBeInstanceOf(OriginChangedError);
  });

  it("fails a body whose file was written while it was read", async () => {
    const path = publicFile("moving.bin", makeContent(4 * MiB, 11));
    const url = pathToFileURL(path).href;
    const fb = new FileBackend({ allowPrivate: false });
    const r = await fb.get({ url, headers: {} });
    const it = r.body[Symbol.asyncIterator]();
    await it.next();
    // Same size, new bytes and a new mtime: without the check the body would mix both.
    writeFileSync(path, makeContent(4 * MiB, 12));
    await expect((async () => {
      for (let n = await it.next(); !n.done; n = await it.next());
    })()).rejects.toBeInstanceOf(OriginChangedError);
  });
});
