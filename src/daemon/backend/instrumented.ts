// Dragonfly's backend request metrics (dragonfly_client_backend_request_{total,failure_total,
// duration_milliseconds}, by URL scheme and HTTP method) around every request a backend makes
// to the origin: stat is its HEAD, get and a native piece fetch its GET. As in Dragonfly, the
// duration runs to the origin's answer (the body is read afterwards, by the caller).
import type { BackendMetrics } from "../metrics.js";
import type { Backend } from "./types.js";

function schemeOf(url: string): string {
  try {
    return new URL(url).protocol.replace(/:$/, "");
  } catch {
    return "";
  }
}

/**
 * Counts one origin request `run` makes: started, failed (it threw), and how long it took
 * (unless `timed` is false: a run that also reads the whole body).
 */
export async function countBackendRequest<T>(metrics: BackendMetrics | undefined, url: string, method: "HEAD" | "GET", run: () => Promise<T>, opts: { timed?: boolean } = {}): Promise<T> {
  if (!metrics) return run();
  const labels = { scheme: schemeOf(url), method };
  metrics.backendRequestTotal.inc(labels);
  const start = performance.now();
  try {
    const result = await run();
    if (opts.timed !== false) metrics.backendRequestDuration.observe(labels, performance.now() - start);
    return result;
  } catch (e) {
    metrics.backendRequestFailureTotal.inc(labels);
    throw e;
  }
}

/**
 * Every member of Backend, so that one added to the interface fails to compile here until
 * instrumentBackend passes it through: an optional method left out would vanish silently.
 */
const PASSED_THROUGH: Record<keyof Backend, true> = { schemes: true, stat: true, get: true, list: true, route: true, fetchPiece: true, forDownload: true, close: true };
void PASSED_THROUGH;

/** `backend` with its origin requests counted; everything else passes through. */
export function instrumentBackend(backend: Backend, metrics: BackendMetrics): Backend {
  const counted: Backend = {
    schemes: backend.schemes,
    stat: (req) => countBackendRequest(metrics, req.url, "HEAD", () => backend.stat(req)),
    get: (req) => countBackendRequest(metrics, req.url, "GET", () => backend.get(req)),
  };
  if (backend.list) counted.list = backend.list.bind(backend);
  if (backend.route) counted.route = backend.route.bind(backend);
  const fetchPiece = backend.fetchPiece?.bind(backend);
  if (fetchPiece) counted.fetchPiece = (route, store, n, signal) => countBackendRequest(metrics, route.url, "GET", () => fetchPiece(route, store, n, signal));
  const forDownload = backend.forDownload?.bind(backend);
  if (forDownload) counted.forDownload = (d) => instrumentBackend(forDownload(d), metrics);
  if (backend.close) counted.close = backend.close.bind(backend);
  return counted;
}
