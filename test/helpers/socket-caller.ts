// A download-socket client that tests run as another user (setpriv), to see what the daemon does
// for a caller that is not itself: `node --import tsx socket-caller.ts SOCKET DOWNLOAD_JSON`
// downloads as dfget does and prints one JSON line, {"ok":true} or {"code":N,"details":"…"}.
import { downloadVia } from "./swarm.js";

const [socket, json] = process.argv.slice(2);
if (!socket || !json) throw new Error("usage: socket-caller.ts SOCKET DOWNLOAD_JSON");
downloadVia(socket, JSON.parse(json) as Record<string, unknown>).then(
  () => process.stdout.write(`${JSON.stringify({ ok: true })}\n`),
  (e: Error & { code?: number }) => process.stdout.write(`${JSON.stringify({ code: e.code, details: e.message })}\n`),
);
