// The API roots /api/v1 and /oapi/v1 answer with what lives below them (as GitHub's API root
// does), so the base URL that `damselfly up` prints leads somewhere: the collections, the
// Swagger UI and the OpenAPI document. Listed from the routes really registered, never by hand.
import { Type } from "@sinclair/typebox";
import { VERSION } from "../../common/version.js";
import type { ManagerApp } from "./context.js";

const ApiIndex = Type.Object({
  name: Type.String(),
  version: Type.String(),
  /** Swagger UI and the OpenAPI document, relative to the server. */
  docs: Type.String(),
  openapi: Type.String(),
  /** The top-level collections under this base, e.g. `/api/v1/clusters`. */
  resources: Type.Array(Type.String()),
});

export function registerApiIndex(app: ManagerApp, base: "/api/v1" | "/oapi/v1", routes: () => ReadonlyArray<{ url: string }>): void {
  app.get(
    base,
    { schema: { tags: ["meta"], summary: `what ${base} holds (no auth: the same as the OpenAPI document)`, response: { 200: ApiIndex } } },
    () => {
      const resources = new Set<string>();
      for (const r of routes()) {
        if (!r.url.startsWith(`${base}/`)) continue;
        const first = r.url.slice(base.length + 1).split("/")[0];
        if (first && !first.startsWith(":")) resources.add(`${base}/${first}`);
      }
      return { name: "damselfly manager", version: VERSION, docs: "/swagger/", openapi: "/swagger/doc.json", resources: [...resources].sort() };
    },
  );
}
