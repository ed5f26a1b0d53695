// Shared by the tests of the native addon's facade.
import { isNativeError } from "../../src/native/index.js";

/** The native error code a promise rejects with; undefined when it resolves. */
export async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isNativeError(e) ? e.code : `not native: ${String(e)}`;
  }
}

/**
 * Deterministic content where a byte at the wrong offset shows: a multiplicative hash of each
 * position (`mul`, `shift` pick the hash, so tests in one run hold different contents).
 */
export function pattern(len: number, mul: number, shift: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (Math.imul(i, mul) >>> shift) & 0xff;
  return b;
}
