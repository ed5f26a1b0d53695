// The only module that loads the napi-rs addon. Everything else imports the typed facade
// below, so the binding surface stays small and buffer ownership rules live in one place:
// Buffers passed in are read during the call only; Buffers returned are owned by the caller.
import { createRequire } from "node:module";
import type * as Binding from "../../native/binding/index.cjs";

const require = createRequire(import.meta.url);
// The path is the same from src/native (tsx, vitest) and dist/native (built CLI).
const binding = require("../../native/binding/index.cjs") as typeof Binding;

export type { AddonVersion, ProbeOptions, ProbeReport, ProbeResult } from "../../native/binding/index.cjs";

/** Error thrown by the addon; `code` is one of the stable `DF_*` strings. */
export interface NativeError extends Error {
  code: NativeErrorCode;
}

export type NativeErrorCode =
  | "DF_IO"
  | "DF_INVALID_ARGUMENT"
  | "DF_NOT_FOUND"
  | "DF_UNSUPPORTED"
  | "DF_DIGEST_MISMATCH"
  | "DF_PIECE_NOT_FINISHED"
  | "DF_ABORTED"
  | "DF_TIMEOUT"
  | "DF_PROTOCOL"
  | "DF_AUTH"
  | "DF_CODEC";

export function isNativeError(e: unknown): e is NativeError {
  const code: unknown = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
  return typeof code === "string" && code.startsWith("DF_");
}

export const addonVersion = (): Binding.AddonVersion => binding.version();
export const noop = (x: number): number => binding.noop(x);
export const probeHost = (options: Binding.ProbeOptions): Binding.ProbeReport => binding.probeHost(options);

export const zstdCompress = (input: Buffer, level: number): Buffer => binding.zstdCompress(input, level);
export const zstdDecompress = (input: Buffer, maxLength: number): Buffer => binding.zstdDecompress(input, maxLength);
export const aesGcmSeal = (key: Buffer, nonce: Buffer, plain: Buffer): Buffer => binding.aesGcmSeal(key, nonce, plain);
export const aesGcmOpen = (key: Buffer, nonce: Buffer, sealed: Buffer): Buffer => binding.aesGcmOpen(key, nonce, sealed);
