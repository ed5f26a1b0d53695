// libpq's `sslmode=prefer` for node-postgres. libpq's prefer asks for TLS and, when the server
// answers that it does not support SSL, connects in plaintext; it does not verify the server's
// certificate (prefer is the default of every libpq client and protects against passive
// eavesdropping only: `verify-full` is the mode that authenticates the server). node-postgres 8
// treats prefer as verify-full, which fails outright against a server without TLS, so a URL
// with sslmode=prefer is handled here: the mode is taken out of the URL (node-postgres lets the
// URL's parameters win over explicit options) and TLS is tried once; the answer decides the
// options every connection of the pool then uses. Other modes are node-postgres's own.
import pg from "pg";

/** The server's answer to SSLRequest when it has no TLS ('N'), as node-postgres words it. */
const NO_SSL = /server does not support SSL/i;

export interface PgConnectOptions {
  connectionString: string;
  ssl?: pg.ClientConfig["ssl"];
}

/** Connection options for `url`, with sslmode=prefer resolved against the server. */
export async function pgConnectOptions(url: string): Promise<PgConnectOptions> {
  const u = new URL(url);
  if (u.searchParams.get("sslmode") !== "prefer") return { connectionString: url };
  u.searchParams.delete("sslmode");
  const connectionString = u.href;
  const tls = { rejectUnauthorized: false };
  const probe = new pg.Client({ connectionString, ssl: tls });
  try {
    await probe.connect();
    return { connectionString, ssl: tls };
  } catch (e) {
    if (e instanceof Error && NO_SSL.test(e.message)) return { connectionString, ssl: false };
    throw e;
  } finally {
    await probe.end().catch(() => undefined);
  }
}
