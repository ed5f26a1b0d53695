// Messages between `damselfly up` and the component processes it forks (over the IPC channel).
export type ComponentRole = "manager" | "scheduler" | "dfdaemon";

export interface ManagerPorts {
  rest: number;
  grpc: number;
  metrics: number;
}
export interface SchedulerPorts {
  grpc: number;
  metrics: number;
}
export interface DaemonPorts {
  upload: number;
  piece: number;
  health: number;
  metrics: number;
  /** The registry mirror / HTTP proxy; 0 when the daemon runs none. */
  proxy: number;
}

export type ChildMessage =
  | { type: "ready"; role: "manager"; ports: ManagerPorts }
  | { type: "ready"; role: "scheduler"; ports: SchedulerPorts }
  | { type: "ready"; role: "dfdaemon"; ports: DaemonPorts; hostId: string; socketPath: string }
  | { type: "failed"; message: string; addressInUse: boolean };

export function isChildMessage(m: unknown): m is ChildMessage {
  if (typeof m !== "object" || m === null || !("type" in m)) return false;
  return m.type === "ready" || m.type === "failed";
}
