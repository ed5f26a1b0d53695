// The signed-in session: the JWT from POST /api/v1/users/signin, kept in localStorage so a
// reload or a second tab stays signed in, refreshed before it expires, dropped on sign-out or
// when the API answers 401.
import type { TokenResponse } from "./types.js";

const KEY = "damselfly.session";
/** Refresh this long before the token's expiry. */
const REFRESH_AHEAD_MS = 10 * 60 * 1000;

function read(): TokenResponse | null {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) ?? "null") as Partial<TokenResponse> | null;
    if (!v || typeof v.token !== "string" || typeof v.expire !== "string") return null;
    if (Date.parse(v.expire) <= Date.now()) return null;
    return { token: v.token, expire: v.expire };
  } catch {
    return null;
  }
}

let stored = read();
const listeners = new Set<() => void>();
let refreshTimer: number | undefined;
/** Why the last session ended when the user did not sign out (shown on the sign-in page). */
let endedBecause: string | undefined;

export function currentToken(): string | null {
  return stored?.token ?? null;
}

export function sessionEndedBecause(): string | undefined {
  return endedBecause;
}

/** Stores a new token (or forgets it) and tells every listener. */
export function setSession(t: TokenResponse | null, reason?: string): void {
  stored = t;
  endedBecause = t ? undefined : reason;
  if (t) localStorage.setItem(KEY, JSON.stringify(t));
  else localStorage.removeItem(KEY);
  scheduleRefresh();
  for (const fn of listeners) fn();
}

export function onSessionChange(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** The user id in a manager JWT (the `id` claim, gin-jwt's identity key in Dragonfly). */
export function tokenUserId(token: string): number {
  const part = token.split(".")[1] ?? "";
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
  const id = (JSON.parse(json) as { id?: unknown }).id;
  if (typeof id !== "number") throw new Error("the session token carries no user id");
  return id;
}

let refresher: (() => Promise<TokenResponse>) | undefined;

/** How to exchange the current token for a fresh one (api.ts supplies it, to avoid an import cycle). */
export function setRefresher(fn: () => Promise<TokenResponse>): void {
  refresher = fn;
  scheduleRefresh();
}

function scheduleRefresh(): void {
  window.clearTimeout(refreshTimer);
  if (!stored || !refresher) return;
  const run = refresher;
  // setTimeout's limit is 2^31-1 ms (24.8 days); tokens live days, so clamp.
  const wait = Math.min(Math.max(Date.parse(stored.expire) - Date.now() - REFRESH_AHEAD_MS, 0), 2 ** 31 - 1);
  refreshTimer = window.setTimeout(() => {
    run().then(
      (t) => setSession(t),
      () => setSession(null, "Your session expired; sign in again."),
    );
  }, wait);
}
