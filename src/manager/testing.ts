// Test support shared by the manager's test files: the database variants every integration
// test runs against (PGlite always; PostgreSQL when DATABASE_URL is set, each run in its own
// schema so concurrent runs do not collide).
import { randomBytes } from "node:crypto";
import { dropSchema, openDatabase, type Database } from "./db/database.js";
import { migrate } from "./db/migrations.js";

export interface DatabaseVariant {
  name: "pglite" | "postgres";
  /** Opens a fresh database, migrated unless `migrated` is false; `cleanup` closes and removes it. */
  open(options?: { migrated?: boolean }): Promise<{ db: Database; url?: string; schema?: string; cleanup(): Promise<void> }>;
}

export const PG_SKIP_NOTICE = "PostgreSQL variant skipped: DATABASE_URL is not set (CI sets it; see .ci/run)";

/** PGlite, plus PostgreSQL when DATABASE_URL is set. Throws in CI when it is not. */
export function databaseVariants(env: NodeJS.ProcessEnv = process.env): { variants: DatabaseVariant[]; skipped?: string } {
  const variants: DatabaseVariant[] = [
    {
      name: "pglite",
      async open({ migrated = true } = {}) {
        const db = await openDatabase({});
        if (migrated) await migrate(db);
        return { db, cleanup: () => db.close() };
      },
    },
  ];
  const url = env.DATABASE_URL;
  if (!url) {
    if (env.CI === "true") throw new Error("CI=true but DATABASE_URL is unset: the PostgreSQL variant of the manager tests cannot run");
    return { variants, skipped: PG_SKIP_NOTICE };
  }
  variants.push({
    name: "postgres",
    async open({ migrated = true } = {}) {
      const schema = `t_${randomBytes(6).toString("hex")}`;
      const db = await openDatabase({ url, schema, maxConnections: 4 });
      if (migrated) await migrate(db);
      return {
        db,
        url,
        schema,
        async cleanup() {
          await db.close();
          await dropSchema(url, schema);
        },
      };
    },
  });
  return { variants };
}
