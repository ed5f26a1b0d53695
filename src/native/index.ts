// The typed facade over the napi-rs addon: the only way the rest of the code reaches native
// code. Buffer ownership: Buffers passed in are only read, and by async calls until their
// promise settles; Buffers returned belong to the caller.
import { binding, type Binding } from "./binding.js";

export type { AddonVersion, ProbeOptions, ProbeReport, ProbeResult } from "../../native/binding/index.cjs";
export { isNativeError, type NativeError, type NativeErrorCode } from "./errors.js";
export * from "./codec.js";
export * from "./store.js";
export * from "./origin.js";
export * from "./peercred.js";

export const addonVersion = (): Binding.AddonVersion => binding.version();
export const probeHost = (options: Binding.ProbeOptions): Binding.ProbeReport => binding.probeHost(options);
