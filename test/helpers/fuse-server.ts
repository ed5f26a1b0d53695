// A FUSE passthrough filesystem that can fail chosen writes with EIO, spoken straight over
// /dev/fuse (no libfuse): the EIO tests need a real kernel I/O error on a piece write, and this
// sandbox has FUSE but no device-mapper. It runs as its own process (test/helpers/fuse.ts forks
// it): it blocks on /dev/fuse reads and answers the kernel synchronously, which must never
// wait on the process doing the I/O through the mount.
//
// argv: <backing dir> <mountpoint>. IPC in: {type:"fail", rule} (fail the next `times` writes
// of files named `name` that overlap [start, end)), {type:"stats"}. IPC out: {type:"ready"},
// {type:"stats", injected, rewrites}.
import { spawnSync } from "node:child_process";
import { closeSync, constants, fstatSync, fsyncSync, ftruncateSync, lstatSync, mkdirSync, openSync, read, readdirSync, readSync, renameSync, rmdirSync, statfsSync, truncateSync, unlinkSync, utimesSync, chmodSync, writeSync, type Stats } from "node:fs";
import { basename, join } from "node:path";

const [backingArg, mountArg] = process.argv.slice(2);
if (!backingArg || !mountArg) throw new Error("usage: fuse-server <backing dir> <mountpoint>");
const backing: string = backingArg;
const mountpoint: string = mountArg;

// Opcodes and flags of linux/fuse.h (protocol 7.31 is enough for a passthrough).
const OP = { LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, MKDIR: 9, UNLINK: 10, RMDIR: 11, RENAME: 12, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17, RELEASE: 18, FSYNC: 20, FLUSH: 25, INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, ACCESS: 34, CREATE: 35, INTERRUPT: 36, DESTROY: 38, BATCH_FORGET: 42 } as const;
const FATTR = { MODE: 1, SIZE: 8, ATIME: 16, MTIME: 32, FH: 64, ATIME_NOW: 128, MTIME_NOW: 256 } as const;
const ENOSYS = 38;
const EIO = 5;
const IN_HEADER = 40;
const MAX_WRITE = 128 * 1024;

interface Rule {
  name: string;
  start: number;
  end: number;
  times: number;
}

let rule: Rule | undefined;
let injected = 0;
/** Successful writes overlapping the rule's range after a failure was injected. */
let rewrites = 0;

const paths = new Map<bigint, string>([[1n, backing]]);
const ids = new Map<string, bigint>([[backing, 1n]]);
let nextId = 2n;
const files = new Map<bigint, { fd: number; path: string }>();
let nextFh = 1n;

function idFor(path: string): bigint {
  let id = ids.get(path);
  if (id === undefined) {
    id = nextId++;
    ids.set(path, id);
    paths.set(id, path);
  }
  return id;
}

function forgetPath(path: string): void {
  const id = ids.get(path);
  if (id === undefined) return;
  ids.delete(path);
  paths.delete(id);
}

function pathOf(node: bigint): string {
  const p = paths.get(node);
  if (p === undefined) throw Object.assign(new Error(`unknown node ${node}`), { errno: -2 });
  return p;
}

function cstrings(buf: Buffer, at: number, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const end = buf.indexOf(0, at);
    out.push(buf.toString("utf8", at, end));
    at = end + 1;
  }
  return out;
}

function attr(st: Stats): Buffer {
  const b = Buffer.alloc(88);
  const sec = (ms: number) => BigInt(Math.floor(ms / 1000));
  const nsec = (ms: number) => Math.round((ms % 1000) * 1e6);
  b.writeBigUInt64LE(BigInt(st.ino), 0);
  b.writeBigUInt64LE(BigInt(st.size), 8);
  b.writeBigUInt64LE(BigInt(st.blocks), 16);
  b.writeBigUInt64LE(sec(st.atimeMs), 24);
  b.writeBigUInt64LE(sec(st.mtimeMs), 32);
  b.writeBigUInt64LE(sec(st.ctimeMs), 40);
  b.writeUInt32LE(nsec(st.atimeMs), 48);
  b.writeUInt32LE(nsec(st.mtimeMs), 52);
  b.writeUInt32LE(nsec(st.ctimeMs), 56);
  b.writeUInt32LE(st.mode, 60);
  b.writeUInt32LE(st.nlink, 64);
  b.writeUInt32LE(st.uid, 68);
  b.writeUInt32LE(st.gid, 72);
  b.writeUInt32LE(st.rdev, 76);
  b.writeUInt32LE(st.blksize, 80);
  return b;
}

/** fuse_entry_out: node id, generation, entry and attribute validity (1 s), attributes. */
function entry(path: string): Buffer {
  const head = Buffer.alloc(40);
  head.writeBigUInt64LE(idFor(path), 0);
  head.writeBigUInt64LE(1n, 16);
  head.writeBigUInt64LE(1n, 24);
  return Buffer.concat([head, attr(lstatSync(path))]);
}

function attrOut(st: Stats): Buffer {
  const head = Buffer.alloc(16);
  head.writeBigUInt64LE(1n, 0);
  return Buffer.concat([head, attr(st)]);
}

function openOut(fh: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(fh, 0);
  return b;
}

/** Flags for the backing file: the access mode and O_APPEND; O_DIRECT is the kernel's business. */
function backingFlags(flags: number): number {
  const O_ACCMODE = 3; // not among node:fs constants
  return flags & (O_ACCMODE | constants.O_APPEND);
}

function register(fd: number, path: string): bigint {
  const fh = nextFh++;
  files.set(fh, { fd, path });
  return fh;
}

function fileOf(fh: bigint): { fd: number; path: string } {
  const f = files.get(fh);
  if (!f) throw Object.assign(new Error(`unknown file handle ${fh}`), { errno: -9 });
  return f;
}

function readdirReply(path: string, offset: number, size: number): Buffer {
  const names = [".", "..", ...readdirSync(path)];
  const parts: Buffer[] = [];
  let used = 0;
  for (let i = offset; i < names.length; i++) {
    const name = Buffer.from(names[i]!);
    const len = (24 + name.length + 7) & ~7;
    if (used + len > size) break;
    const d = Buffer.alloc(len);
    let type = 0;
    try {
      const st = lstatSync(join(path, names[i]!));
      type = st.isDirectory() ? 4 : st.isFile() ? 8 : 0;
      d.writeBigUInt64LE(BigInt(st.ino), 0);
    } catch {
      d.writeBigUInt64LE(1n, 0);
    }
    d.writeBigUInt64LE(BigInt(i + 1), 8);
    d.writeUInt32LE(name.length, 16);
    d.writeUInt32LE(type, 20);
    name.copy(d, 24);
    parts.push(d);
    used += len;
  }
  return Buffer.concat(parts);
}

function write(fh: bigint, offset: number, data: Buffer): Buffer {
  const f = fileOf(fh);
  const r = rule;
  const hits = r !== undefined && basename(f.path) === r.name && offset < r.end && offset + data.length > r.start;
  if (hits && r.times > 0) {
    r.times--;
    injected++;
    throw Object.assign(new Error("injected EIO"), { errno: -EIO });
  }
  let done = 0;
  while (done < data.length) done += writeSync(f.fd, data, done, data.length - done, offset + done);
  if (hits && injected > 0) rewrites++;
  const out = Buffer.alloc(8);
  out.writeUInt32LE(data.length, 0);
  return out;
}

function setattr(node: bigint, b: Buffer): Buffer {
  const valid = b.readUInt32LE(IN_HEADER);
  const fh = b.readBigUInt64LE(IN_HEADER + 8);
  const path = pathOf(node);
  if (valid & FATTR.SIZE) {
    const size = Number(b.readBigUInt64LE(IN_HEADER + 16));
    if (valid & FATTR.FH) ftruncateSync(fileOf(fh).fd, size);
    else truncateSync(path, size);
  }
  if (valid & FATTR.MODE) chmodSync(path, b.readUInt32LE(IN_HEADER + 68) & 0o7777);
  if (valid & (FATTR.ATIME | FATTR.MTIME | FATTR.ATIME_NOW | FATTR.MTIME_NOW)) {
    const st = lstatSync(path);
    const now = Date.now() / 1000;
    const at = valid & FATTR.ATIME_NOW ? now : valid & FATTR.ATIME ? Number(b.readBigUInt64LE(IN_HEADER + 32)) : st.atimeMs / 1000;
    const mt = valid & FATTR.MTIME_NOW ? now : valid & FATTR.MTIME ? Number(b.readBigUInt64LE(IN_HEADER + 40)) : st.mtimeMs / 1000;
    utimesSync(path, at, mt);
  }
  return attrOut(valid & FATTR.FH ? fstatSync(fileOf(fh).fd) : lstatSync(path));
}

/** Answers one request: the reply body, or undefined for requests that take no reply. */
function handle(op: number, node: bigint, b: Buffer): Buffer | undefined {
  const body = IN_HEADER;
  switch (op) {
    case OP.INIT: {
      const out = Buffer.alloc(64);
      out.writeUInt32LE(7, 0);
      out.writeUInt32LE(31, 4);
      out.writeUInt32LE(b.readUInt32LE(body + 8), 8); // max_readahead as the kernel offers
      out.writeUInt32LE(1 << 5, 12); // FUSE_BIG_WRITES
      out.writeUInt16LE(16, 16);
      out.writeUInt16LE(12, 18);
      out.writeUInt32LE(MAX_WRITE, 20);
      out.writeUInt32LE(1, 24);
      return out;
    }
    case OP.LOOKUP:
      return entry(join(pathOf(node), cstrings(b, body, 1)[0]!));
    case OP.FORGET:
    case OP.BATCH_FORGET:
    case OP.INTERRUPT:
      return undefined;
    case OP.GETATTR:
      return attrOut(lstatSync(pathOf(node)));
    case OP.SETATTR:
      return setattr(node, b);
    case OP.MKDIR: {
      const mode = b.readUInt32LE(body);
      const path = join(pathOf(node), cstrings(b, body + 8, 1)[0]!);
      mkdirSync(path, { mode: mode & 0o7777 });
      return entry(path);
    }
    case OP.UNLINK:
    case OP.RMDIR: {
      const path = join(pathOf(node), cstrings(b, body, 1)[0]!);
      if (op === OP.UNLINK) unlinkSync(path);
      else rmdirSync(path);
      forgetPath(path);
      return Buffer.alloc(0);
    }
    case OP.RENAME: {
      const to = b.readBigUInt64LE(body);
      const [from, name] = cstrings(b, body + 8, 2);
      const src = join(pathOf(node), from!);
      const dst = join(pathOf(to), name!);
      renameSync(src, dst);
      forgetPath(dst);
      for (const [p, id] of [...ids]) {
        if (p !== src && !p.startsWith(`${src}/`)) continue;
        const moved = dst + p.slice(src.length);
        ids.delete(p);
        ids.set(moved, id);
        paths.set(id, moved);
      }
      for (const f of files.values()) if (f.path === src) f.path = dst;
      return Buffer.alloc(0);
    }
    case OP.OPEN: {
      const path = pathOf(node);
      return openOut(register(openSync(path, backingFlags(b.readUInt32LE(body))), path));
    }
    case OP.CREATE: {
      const flags = b.readUInt32LE(body);
      const mode = b.readUInt32LE(body + 4);
      const path = join(pathOf(node), cstrings(b, body + 16, 1)[0]!);
      const fd = openSync(path, backingFlags(flags) | constants.O_CREAT, mode & 0o7777);
      return Buffer.concat([entry(path), openOut(register(fd, path))]);
    }
    case OP.READ: {
      const f = fileOf(b.readBigUInt64LE(body));
      const offset = Number(b.readBigUInt64LE(body + 8));
      const out = Buffer.alloc(b.readUInt32LE(body + 16));
      const n = readSync(f.fd, out, 0, out.length, offset);
      return out.subarray(0, n);
    }
    case OP.WRITE: {
      const size = b.readUInt32LE(body + 16);
      return write(b.readBigUInt64LE(body), Number(b.readBigUInt64LE(body + 8)), b.subarray(body + 40, body + 40 + size));
    }
    case OP.STATFS: {
      const s = statfsSync(backing);
      const out = Buffer.alloc(80);
      out.writeBigUInt64LE(BigInt(s.blocks), 0);
      out.writeBigUInt64LE(BigInt(s.bfree), 8);
      out.writeBigUInt64LE(BigInt(s.bavail), 16);
      out.writeBigUInt64LE(BigInt(s.files), 24);
      out.writeBigUInt64LE(BigInt(s.ffree), 32);
      out.writeUInt32LE(s.bsize, 40);
      out.writeUInt32LE(255, 44);
      out.writeUInt32LE(s.bsize, 48);
      return out;
    }
    case OP.RELEASE: {
      const fh = b.readBigUInt64LE(body);
      const f = files.get(fh);
      files.delete(fh);
      if (f) closeSync(f.fd);
      return Buffer.alloc(0);
    }
    case OP.FSYNC: {
      fsyncSync(fileOf(b.readBigUInt64LE(body)).fd);
      return Buffer.alloc(0);
    }
    case OP.FLUSH:
    case OP.RELEASEDIR:
    case OP.FSYNCDIR:
    case OP.ACCESS:
    case OP.DESTROY:
      return Buffer.alloc(0);
    case OP.OPENDIR:
      return openOut(0n);
    case OP.READDIR:
      return readdirReply(pathOf(node), Number(b.readBigUInt64LE(body + 8)), b.readUInt32LE(body + 16));
    default:
      // xattrs, locks, fallocate, lseek, …: the kernel falls back (fallocate → EOPNOTSUPP,
      // and the store then sizes the file with ftruncate).
      throw Object.assign(new Error(`opcode ${op} not implemented`), { errno: -ENOSYS });
  }
}

const dev = openSync("/dev/fuse", "r+");
const mounted = spawnSync("mount", ["-t", "fuse", "-o", "fd=3,rootmode=40000,user_id=0,group_id=0,allow_other", "damselfly-faulty", mountpoint], { stdio: ["ignore", "inherit", "inherit", dev] });
if (mounted.status !== 0) throw new Error(`mount -t fuse failed with status ${mounted.status}`);

function reply(unique: bigint, error: number, data?: Buffer): void {
  const head = Buffer.alloc(16);
  const len = 16 + (error === 0 && data ? data.length : 0);
  head.writeUInt32LE(len, 0);
  head.writeInt32LE(error, 4);
  head.writeBigUInt64LE(unique, 8);
  try {
    writeSync(dev, error === 0 && data ? Buffer.concat([head, data]) : head);
  } catch {
    // The request was interrupted meanwhile (ENOENT): nothing waits for the answer.
  }
}

const buf = Buffer.alloc(MAX_WRITE + 64 * 1024);
function next(): void {
  read(dev, buf, 0, buf.length, null, (err, n) => {
    if (err) {
      // ENODEV once unmounted: the filesystem is gone.
      process.exit(0);
    }
    const op = buf.readUInt32LE(4);
    const unique = buf.readBigUInt64LE(8);
    const node = buf.readBigUInt64LE(16);
    const req = buf.subarray(0, n);
    try {
      const out = handle(op, node, req);
      if (out !== undefined) reply(unique, 0, out);
      if (op === OP.INIT) process.send?.({ type: "ready" });
    } catch (e) {
      const errno = (e as { errno?: number }).errno;
      reply(unique, typeof errno === "number" && errno < 0 ? errno : -EIO);
    }
    next();
  });
}
next();

process.on("message", (m: { type: string; rule?: Rule }) => {
  if (m.type === "fail") {
    rule = m.rule;
    injected = 0;
    rewrites = 0;
  }
  process.send?.({ type: "stats", injected, rewrites });
});
