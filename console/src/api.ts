// Calls to the manager's REST API (same origin): JSON in and out, the session's bearer token,
// errors as ApiError with the manager's `{"message"}`, totals from X-Total-Count.
import { currentToken, setRefresher, setSession } from "./session.js";
import type { TokenResponse } from "./types.js";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly method: string,
    readonly path: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export type Method = "GET" | "POST" | "PATCH" | "PUT" | "DELETE";
export type Query = Record<string, string | number | boolean | undefined>;

function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function send(method: Method, path: string, body?: unknown): Promise<Response> {
  const token = currentToken();
  const headers: Record<string, string> = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  } catch (e) {
    throw new ApiError(0, `the manager did not answer (${e instanceof Error ? e.message : String(e)})`, method, path);
  }
  if (res.ok) return res;
  let message = `${res.status} ${res.statusText}`;
  let field: string | undefined;
  try {
    const j = (await res.json()) as { message?: unknown; field?: unknown };
    if (typeof j.message === "string") message = j.message;
    if (typeof j.field === "string") field = j.field;
  } catch {
    // not JSON: keep the status line
  }
  // A token the manager no longer accepts (expired, revoked, password changed): sign in again.
  if (res.status === 401 && token) setSession(null, "Your session ended; sign in again.");
  throw new ApiError(res.status, message, method, path, field);
}

export async function api<T>(method: Method, path: string, body?: unknown, query?: Query): Promise<T> {
  const res = await send(method, withQuery(path, query), body);
  return (await res.json()) as T;
}

export interface ListPage<T> {
  items: T[];
  /** Every matching row, not just this page (X-Total-Count). */
  total: number;
}

export async function list<T>(path: string, query?: Query): Promise<ListPage<T>> {
  const res = await send("GET", withQuery(path, query));
  const items = (await res.json()) as T[];
  const total = Number(res.headers.get("x-total-count") ?? items.length);
  return { items, total: Number.isFinite(total) ? total : items.length };
}

setRefresher(() => api<TokenResponse>("POST", "/api/v1/users/refresh_token"));
