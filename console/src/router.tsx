// Client-side routes on the History API: the manager answers every console path with
// index.html, so /jobs/12 can be loaded, bookmarked and reloaded directly.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";

const CHANGE = "damselfly:navigate";

export interface Location {
  path: string;
  query: URLSearchParams;
}

function current(): Location {
  return { path: window.location.pathname, query: new URLSearchParams(window.location.search) };
}

/** Goes to `to` (path and query) without a page load; `state` rides along in history.state. */
export function navigate(to: string, opts: { replace?: boolean; state?: unknown } = {}): void {
  if (opts.replace) window.history.replaceState(opts.state ?? null, "", to);
  else window.history.pushState(opts.state ?? null, "", to);
  window.dispatchEvent(new Event(CHANGE));
  window.scrollTo(0, 0);
}

/** The current location; re-renders on navigation and on the browser's back/forward. */
export function useLocation(): Location {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const update = () => setLoc(current());
    window.addEventListener(CHANGE, update);
    window.addEventListener("popstate", update);
    return () => {
      window.removeEventListener(CHANGE, update);
      window.removeEventListener("popstate", update);
    };
  }, []);
  return loc;
}

/** `next` if it is a path of this console (never another origin's URL), else the overview. */
export function localPath(next: string | null): string {
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/signin") ? next : "/";
}

/** `/jobs/:id` against `/jobs/12` → `{ id: "12" }`; null when it does not match. */
export function matchRoute(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split("/").filter(Boolean);
  const s = path.split("/").filter(Boolean);
  if (p.length !== s.length) return null;
  const params: Record<string, string> = {};
  for (const [i, part] of p.entries()) {
    const seg = s[i] ?? "";
    if (part.startsWith(":")) params[part.slice(1)] = decodeURIComponent(seg);
    else if (part !== seg) return null;
  }
  return params;
}

interface LinkProps {
  href: string;
  children?: ComponentChildren;
  class?: string | undefined;
  "aria-current"?: "page" | undefined;
}

/** An anchor that navigates in place (a modified click still opens a new tab). */
export function Link({ href, children, ...rest }: LinkProps) {
  const onClick = (e: MouseEvent) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return (
    <a href={href} onClick={onClick} {...rest}>
      {children}
    </a>
  );
}
