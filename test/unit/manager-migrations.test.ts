// Loading the manager's migrations from their .sql files: versions and names from the file
// names, refusals that name the file, and the build's copy (scripts/copy-sql.mjs) giving the
// compiled manager the same migrations in dist/.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { loadMigrations, MIGRATIONS_DIR, splitStatements } from "../../src/manager/db/migrations.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "manager-migrations-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("manager migrations", () => {
  it("are read from src/manager/db/migrations, in version order, named by their files", () => {
    expect(MIGRATIONS_DIR).toBe(join(root, "src", "manager", "db", "migrations") + "/");
    const ms = loadMigrations();
    expect(ms.map((m) => [m.version, m.name])).toEqual([
      [1, "control plane"],
      [2, "webhooks"],
      [3, "tenant keys"],
      [4, "tenant key wrapping"],
      [5, "job retry"],
      [6, "host commands"],
    ]);
    expect(splitStatements(ms[0]?.sql ?? "")[0]).toMatch(/^CREATE TABLE tenants \(/);
  });

  it("sorts by version whatever the directory order, and ignores files that are not .sql", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "0010_later_one.sql"), "SELECT 10;\n");
    writeFileSync(join(dir, "0002_first.sql"), "SELECT 2;\n");
    writeFileSync(join(dir, "README.md"), "notes\n");
    expect(loadMigrations(dir).map((m) => [m.version, m.name])).toEqual([
      [2, "first"],
      [10, "later one"],
    ]);
  });

  it("refuses a badly named file, a repeated version, an empty or missing directory, naming what is wrong", () => {
    const bad = tempDir();
    writeFileSync(join(bad, "3_webhooks.sql"), "SELECT 1;\n");
    expect(() => loadMigrations(bad)).toThrow(`database migration ${join(bad, "3_webhooks.sql")}: the name must be NNNN_words.sql`);
    const twice = tempDir();
    writeFileSync(join(twice, "0001_a.sql"), "SELECT 1;\n");
    writeFileSync(join(twice, "0001_b.sql"), "SELECT 1;\n");
    expect(() => loadMigrations(twice)).toThrow(/0001_b\.sql and version 1 "a" .* have the same version/);
    expect(() => loadMigrations(tempDir())).toThrow(/no NNNN_name\.sql file/);
    expect(() => loadMigrations(join(tempDir(), "absent"))).toThrow(/cannot read .*absent: ENOENT.* \(a build must copy src\/manager\/db\/migrations\/\*\.sql next to migrations\.js\)/);
  });

  it("drops comment lines before splitting, so a comment may end in a semicolon", () => {
    expect(splitStatements("-- first; then\nCREATE TABLE a (x int);\n  -- b;\nINSERT INTO a VALUES (1);\n")).toEqual(["CREATE TABLE a (x int)", "INSERT INTO a VALUES (1)"]);
  });

  it("are copied by the build next to the compiled manager, where it finds the same ones", () => {
    const dist = tempDir();
    const run = spawnSync(process.execPath, [join(root, "scripts", "copy-sql.mjs"), join(root, "src"), dist], { encoding: "utf8" });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(loadMigrations(join(dist, "manager", "db", "migrations"))).toEqual(loadMigrations());
  });

  it("fails the build when there is nothing to copy", () => {
    const src = tempDir();
    mkdirSync(join(src, "manager"));
    const run = spawnSync(process.execPath, [join(root, "scripts", "copy-sql.mjs"), src, tempDir()], { encoding: "utf8" });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`copy-sql: no .sql file under ${src}`);
  });
});
