// Part of `npm run build:ts`: tsc compiles src/ into dist/ but copies nothing else, and the
// manager reads its migrations (src/manager/db/migrations/*.sql) at run time from next to its
// compiled code. Copies every .sql file under src/ to the same place under dist/.
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const src = process.argv[2] ?? join(root, "src");
const out = process.argv[3] ?? join(root, "dist");

let copied = 0;
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith(".sql")) continue;
  const from = join(entry.parentPath, entry.name);
  const to = join(out, relative(src, from));
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  copied++;
}
if (copied === 0) {
  console.error(`copy-sql: no .sql file under ${src}`);
  process.exit(1);
}
