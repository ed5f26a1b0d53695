// Where a webhook may point: an http(s) URL without credentials in it (they would be shown to
// every reader of the webhook; auth_header is write-only), whose host the webhook SSRF policy
// allows. A name that does not resolve yet is accepted: the policy checks the address again at
// every connection, so DNS changing later (rebinding) cannot reach a refused address either.
import { SsrfError, type SsrfPolicy } from "../../common/ssrf.js";
import { badRequest } from "../errors.js";

export async function checkWebhookUrl(ssrf: SsrfPolicy, raw: string, field = "body.url"): Promise<void> {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw badRequest(field, `"${raw}" is not a valid URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw badRequest(field, `scheme "${u.protocol.replace(/:$/, "")}" is not allowed; use http or https`);
  if (u.username || u.password) throw badRequest(field, "must not contain credentials; use auth_header");
  try {
    await ssrf.checkUrl(u);
  } catch (e) {
    if (e instanceof SsrfError) throw badRequest(field, e.message);
  }
}
