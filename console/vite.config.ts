// The console's build: console/ → dist/console, served by the manager at / (src/manager/console.ts).
// `npm run build:console` runs it (part of `npm run build`, hence of `npm ci`).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";
import { budget } from "./build/budget.js";

const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  base: "/",
  // Preact's automatic JSX runtime (no React, no compat layer).
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: fileURLToPath(new URL("../dist/console", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    // Every page in one small bundle: the whole app is far below the budget, and client-side
    // navigation then never waits for a chunk.
    assetsInlineLimit: 0,
  },
  plugins: [budget({ firstLoadJsGzipBytes: 300 * 1024 })],
});
