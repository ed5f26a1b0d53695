// Loads the napi-rs addon. Only modules in src/native import this file; everything else goes
// through the typed facade re-exported by ./index.ts.
import { createRequire } from "node:module";
import type * as Binding from "../../native/binding/index.cjs";

const require = createRequire(import.meta.url);
// The path is the same from src/native (tsx, vitest) and dist/native (built CLI).
export const binding = require("../../native/binding/index.cjs") as typeof Binding;
export type { Binding };
