// Where a webhook may point: an http(s) URL without credentials in it (they would be shown to
// every reader of the webhook; auth_header is write-only), whose host the webhook SSRF policy
// allows. A name that does not resolve yet is accepted: the policy checks the address again at
// every connection, so DNS changing later (rebinding) cannot reach a refused address either.
import { endpointRule } from "../../common/object-storage.js";
import { SsrfError, type SsrfPolicy } from "../../common/ssrf.js";
import { badRequest } from "../errors.js";

export async function checkWebhookUrl(ssrf: SsrfPolicy, raw: string, field = "body.url"): Promise<void> {
  // The same rule as an object store's endpoint: http(s), no credentials.
  const checked = endpointRule(raw);
  if (!checked.ok) {
    if (checked.wrong === "not-a-url") throw badRequest(field, `"${raw}" is not a valid URL`);
    if (checked.wrong === "not-http") throw badRequest(field, `scheme "${checked.parsed.protocol.replace(/:$/, "")}" is not allowed; use http or https`);
    throw badRequest(field, "must not contain credentials; use auth_header");
  }
  try {
    await ssrf.checkUrl(checked.value);
  } catch (e) {
    if (e instanceof SsrfError) throw badRequest(field, e.message);
  }
}
