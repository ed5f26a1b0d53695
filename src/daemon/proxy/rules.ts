// proxy.rules: which URLs go through P2P. A rule's regex is matched against the URL without
// query and fragment, first match wins (Dragonfly's order). `useTLS` switches the download to
// https and `redirect` swaps the authority, so a plain-HTTP client can pull from a TLS origin.
import { ConfigError } from "../../common/config.js";
import { errorMessage } from "../../common/errors.js";

export interface RuleConfig {
  regex: string;
  useTLS: boolean;
  redirect: string;
  filteredQueryParams?: string[] | undefined;
}

export interface Rule extends RuleConfig {
  pattern: RegExp;
}

export function compileRules(rules: readonly RuleConfig[]): Rule[] {
  return rules.map((r, i) => {
    let pattern: RegExp;
    try {
      pattern = new RegExp(r.regex);
    } catch (e) {
      throw new ConfigError(`proxy.rules.${i}.regex: ${errorMessage(e)}`);
    }
    if (r.redirect && !/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(r.redirect)) {
      throw new ConfigError(`proxy.rules.${i}.redirect: expected host[:port], got "${r.redirect}"`);
    }
    return { ...r, pattern };
  });
}

export function matchRule(rules: readonly Rule[], url: URL): Rule | undefined {
  const bare = new URL(url.href);
  bare.search = "";
  bare.hash = "";
  return rules.find((r) => r.pattern.test(bare.href));
}

/** The URL the task downloads from, after the rule's TLS switch and redirect. */
export function downloadUrl(url: URL, rule: Rule | undefined): URL {
  const out = new URL(url.href);
  if (rule?.useTLS && out.protocol === "http:") {
    const port = out.port;
    out.protocol = "https:";
    out.port = port;
  }
  if (rule?.redirect) out.host = rule.redirect;
  return out;
}
