// Loading and acting on API data in a page. A 403 from the manager, on a read or an action,
// leads to the 403 page, which names what was refused and why: the API decides what a role
// may do, the console only reports it.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api.js";
import { navigate } from "./router.js";

export interface Refusal {
  message: string;
  method: string;
  path: string;
  /** The console page the user was on. */
  from: string;
}

export function showForbidden(e: ApiError): void {
  const refusal: Refusal = { message: e.message, method: e.method, path: e.path.split("?")[0] ?? e.path, from: window.location.pathname };
  navigate("/403", { state: refusal });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export interface Loaded<T> {
  data: T | undefined;
  error: string | undefined;
  reload: () => void;
}

/**
 * Runs `load` now, when `deps` change and on reload(); with `refreshMs` again after every
 * result for which it returns a number (polling until, say, a job is final).
 */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[], refreshMs?: (data: T) => number | undefined): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const refreshRef = useRef(refreshMs);
  refreshRef.current = refreshMs;
  useEffect(() => {
    let live = true;
    let timer: number | undefined;
    loadRef.current().then(
      (d) => {
        if (!live) return;
        setData(d);
        setError(undefined);
        const again = refreshRef.current?.(d);
        if (again !== undefined) timer = window.setTimeout(() => setTick((t) => t + 1), again);
      },
      (e: unknown) => {
        if (!live) return;
        if (e instanceof ApiError && e.status === 403) return showForbidden(e);
        setError(errorText(e));
      },
    );
    return () => {
      live = false;
      window.clearTimeout(timer);
    };
    // The caller's deps decide when to load again; `load` itself is read through a ref.
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, reload };
}

export interface Action {
  busy: boolean;
  error: string | undefined;
  /** The field the manager named in a 400, to point at in the form. */
  field: string | undefined;
  run: <T>(fn: () => Promise<T>) => Promise<T | undefined>;
}

/** A button's or form's call: busy while it runs, its error kept for display, 403 → the 403 page. */
export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  const [field, setField] = useState<string | undefined>(undefined);
  const run = useCallback(async <T>(fn: () => Promise<T>): Promise<T | undefined> => {
    setBusy(true);
    setError(undefined);
    setField(undefined);
    try {
      return await fn();
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) {
        showForbidden(e);
        return undefined;
      }
      setError(errorText(e));
      if (e instanceof ApiError) setField(e.field);
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, field, run };
}
