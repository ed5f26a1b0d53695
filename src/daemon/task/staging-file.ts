// The file an origin of unknown length is staged in (unknown-length.ts), plain or sealed. A task
// of a tenant sealed at rest (storage.encryption) must not have a plaintext byte on disk, not
// even for the moment before its length is known, so its staging file is sealed too: records
// of RECORD bytes, each AES-256-GCM under a key made for this one file and kept in this
// process's memory only (never the tenant's key: the staged bytes outlive no download, and a
// daemon restart forgets the key along with the file, which startup removes anyway). A record's
// nonce is its index, so no nonce repeats under the key, and records cannot be swapped or
// replayed; a flipped byte fails the read instead of reaching the task.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import type { FileHandle } from "node:fs/promises";

/** Plain bytes per sealed record. */
const RECORD = 64 * 1024;
const TAG = 16;

export interface StagingFile {
  /** Appends `chunk` (the origin's next bytes). */
  append(chunk: Buffer): Promise<void>;
  /** Called once at the end of the body, before any read. */
  finish(): Promise<void>;
  /** Reads `buf.length` plain bytes at `offset`. */
  read(offset: number, buf: Buffer): Promise<void>;
}

async function readExactly(file: FileHandle, path: string, buf: Buffer, at: number): Promise<void> {
  const { bytesRead } = await file.read(buf, 0, buf.length, at);
  if (bytesRead !== buf.length) throw new Error(`staged content ${path}: read ${bytesRead} of ${buf.length} bytes at ${at}`);
}

/** The plain staging file: the origin's bytes as they came. */
export function plainStaging(file: FileHandle, path: string): StagingFile {
  let length = 0;
  return {
    append: async (chunk) => {
      await file.write(chunk, 0, chunk.length, length);
      length += chunk.length;
    },
    finish: () => Promise.resolve(),
    read: (offset, buf) => readExactly(file, path, buf, offset),
  };
}

const nonceOf = (record: number): Buffer => {
  const nonce = Buffer.alloc(12);
  nonce.writeUIntBE(record, 6, 6);
  return nonce;
};

/** The sealed staging file: only ciphertext and tags reach the disk. */
export function sealedStaging(file: FileHandle, path: string): StagingFile {
  const key = randomBytes(32);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let records = 0;
  let length = 0;

  const seal = async (plain: Buffer): Promise<void> => {
    const cipher = createCipheriv("aes-256-gcm", key, nonceOf(records));
    const sealed = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    plain.fill(0);
    await file.write(sealed, 0, sealed.length, records * (RECORD + TAG));
    records++;
  };
  const flush = async (all: boolean): Promise<void> => {
    let joined = Buffer.concat(pending, pendingBytes);
    for (const p of pending) p.fill(0);
    while (joined.length >= RECORD || (all && joined.length > 0)) {
      const n = Math.min(RECORD, joined.length);
      await seal(Buffer.from(joined.subarray(0, n)));
      joined = joined.subarray(n);
    }
    pending = joined.length > 0 ? [Buffer.from(joined)] : [];
    pendingBytes = joined.length;
  };

  return {
    append: async (chunk) => {
      // Chunks are the origin's; records are ours: copied, since undici may reuse the buffer.
      pending.push(Buffer.from(chunk));
      pendingBytes += chunk.length;
      length += chunk.length;
      if (pendingBytes >= RECORD) await flush(false);
    },
    finish: () => flush(true),
    read: async (offset, buf) => {
      if (offset + buf.length > length) throw new Error(`staged content ${path}: read of ${buf.length} bytes at ${offset} is past its ${length} bytes`);
      let done = 0;
      while (done < buf.length) {
        const at = offset + done;
        const record = Math.floor(at / RECORD);
        const plainLength = Math.min(RECORD, length - record * RECORD);
        const sealed = Buffer.alloc(plainLength + TAG);
        await readExactly(file, path, sealed, record * (RECORD + TAG));
        const decipher = createDecipheriv("aes-256-gcm", key, nonceOf(record));
        decipher.setAuthTag(sealed.subarray(plainLength));
        let plain: Buffer;
        try {
          plain = Buffer.concat([decipher.update(sealed.subarray(0, plainLength)), decipher.final()]);
        } catch {
          throw new Error(`staged content ${path}: record ${record} failed its integrity check (the staging file was changed on disk)`);
        }
        done += plain.copy(buf, done, at - record * RECORD);
        plain.fill(0);
      }
    },
  };
}
