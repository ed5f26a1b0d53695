// The console's size budget (issue 25: first load under 300 KB of JS gzipped), checked on every
// build: the JS that index.html loads (entry chunks and their static imports) is gzipped and
// summed, printed, written to budget.json next to the assets, and the build fails above the
// budget. Every text asset also gets .gz and .br siblings, which the manager serves to browsers
// that accept them (@fastify/static's preCompressed), so the measured size is what travels.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import type { Plugin } from "vite";

export interface BudgetOptions {
  firstLoadJsGzipBytes: number;
}

export interface BudgetReport {
  /** Gzipped bytes of the JS a first visit loads. */
  firstLoadJsGzipBytes: number;
  budgetBytes: number;
  /** Per file: raw and gzipped bytes. */
  files: Array<{ file: string; bytes: number; gzipBytes: number }>;
}

const TEXT = /\.(js|css|html|svg|json)$/;

export function budget(opts: BudgetOptions): Plugin {
  return {
    name: "damselfly-console-budget",
    apply: "build",
    writeBundle(output, bundle) {
      const dir = output.dir ?? "";
      const content = (name: string): Buffer | undefined => {
        const item = bundle[name];
        if (!item) return undefined;
        return Buffer.from(item.type === "chunk" ? item.code : item.source);
      };
      // What index.html pulls in before anything renders: entries and, transitively, their static imports.
      const firstLoad = new Set<string>();
      const visit = (name: string) => {
        const item = bundle[name];
        if (!item || item.type !== "chunk" || firstLoad.has(name)) return;
        firstLoad.add(name);
        item.imports.forEach(visit);
      };
      for (const [name, item] of Object.entries(bundle)) if (item.type === "chunk" && item.isEntry) visit(name);
      const files = [...firstLoad].map((file) => {
        const raw = content(file) ?? Buffer.alloc(0);
        return { file, bytes: raw.length, gzipBytes: gzipSync(raw, { level: 9 }).length };
      });
      const report: BudgetReport = { firstLoadJsGzipBytes: files.reduce((n, f) => n + f.gzipBytes, 0), budgetBytes: opts.firstLoadJsGzipBytes, files };
      writeFileSync(join(dir, "budget.json"), `${JSON.stringify(report, null, 2)}\n`);
      for (const name of Object.keys(bundle)) {
        const raw = content(name);
        if (!raw || !TEXT.test(name) || raw.length < 1024) continue;
        writeFileSync(join(dir, `${name}.gz`), gzipSync(raw, { level: 9 }));
        writeFileSync(join(dir, `${name}.br`), brotliCompressSync(raw, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: raw.length } }));
      }
      const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
      this.info(`first-load JS ${kb(report.firstLoadJsGzipBytes)} gzipped (${files.length} file${files.length === 1 ? "" : "s"}; budget ${kb(opts.firstLoadJsGzipBytes)})`);
      if (report.firstLoadJsGzipBytes > opts.firstLoadJsGzipBytes) {
        this.error(`the console's first-load JS is ${kb(report.firstLoadJsGzipBytes)} gzipped, over the ${kb(opts.firstLoadJsGzipBytes)} budget: split a page out (dynamic import) or drop a dependency`);
      }
    },
  };
}
