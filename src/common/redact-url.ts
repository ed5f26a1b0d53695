// URLs fit for a log line: no query (S3/GCS/Azure signed URLs carry their signature and
// credential there, registries their tokens), no fragment, no userinfo, bounded length. The
// logger (logger.ts) passes every URL-bearing field and error text through these, so a URL
// logged by the daemon, the proxy, the scheduler or the manager never carries them; callers
// logging a URL under another key call redactUrl themselves.

const MAX_LENGTH = 512;

/** `raw` without query, fragment and userinfo; a path or a CONNECT authority works too. */
export function redactUrl(raw: string): string;
export function redactUrl(raw: string | undefined): string | undefined;
export function redactUrl(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const bare = raw.replace(/[?#][\s\S]*$/, "");
  let out: string;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(bare)) {
    try {
      const u = new URL(bare);
      u.username = "";
      u.password = "";
      out = u.href;
    } catch {
      out = bare.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/]*@/i, "$1");
    }
  } else {
    // Origin-form path, or a CONNECT authority.
    out = bare.replace(/^[^/]*@/, "");
  }
  return out.length > MAX_LENGTH ? `${out.slice(0, MAX_LENGTH)}…` : out;
}

/** Every absolute URL inside free text (an error message) passed through redactUrl. */
export function redactUrlsIn(text: string): string {
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi, (url) => {
    // Punctuation closing the sentence around the URL stays.
    const tail = /[),.;:]+$/.exec(url)?.[0] ?? "";
    return `${redactUrl(url.slice(0, url.length - tail.length))}${tail}`;
  });
}
