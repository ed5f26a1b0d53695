// What the tests ask of a running stack the way its clients do: the manager's REST API as
// Harbor calls it (JSON in and out, a bearer token), and a daemon's StatTask on its upload
// port as the manager's get_task does.
import { credentials, Metadata } from "@grpc/grpc-js";
import type { Task } from "../../src/gen/common/v2/common.js";
import { DfdaemonUploadClient } from "../../src/gen/dfdaemon/v2/dfdaemon.js";

export type RestCall = <T>(method: string, path: string, token: string | undefined, body?: unknown) => Promise<{ status: number; body: T }>;

/** JSON requests to the manager's REST API at `api` (http://host:port). */
export function restClient(api: string): RestCall {
  return async <T>(method: string, path: string, token: string | undefined, body?: unknown) => {
    const res = await fetch(`${api}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as T };
  };
}

/** StatTask on the daemon whose upload service listens on 127.0.0.1:`uploadPort`. */
export function statTask(uploadPort: number, taskId: string): Promise<Task> {
  const client = new DfdaemonUploadClient(`127.0.0.1:${uploadPort}`, credentials.createInsecure());
  return new Promise<Task>((resolve, reject) => {
    client.statTask({ taskId }, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res);
    });
  });
}
