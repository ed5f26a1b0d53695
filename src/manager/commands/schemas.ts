// TypeBox schemas of the command API (/api/v1/commands; routes/commands.ts): what an operator
// sends, what a command and its per-host results look like, and the daemons connected now.
import { Type } from "@sinclair/typebox";
import { Id, Page, Timestamp } from "../schemas.js";

export const COMMAND_TYPES = ["gc", "delete_task", "set_log_level", "refresh_config"] as const;
export type CommandType = (typeof COMMAND_TYPES)[number];
/** pino's levels, which every Damselfly process logs with (common/logger.ts). */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

export const CommandArgs = Type.Object(
  {
    /** delete_task: the task to remove. */
    task_id: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    /** set_log_level: the level from now on. */
    level: Type.Optional(Type.Union(LOG_LEVELS.map((l) => Type.Literal(l)))),
  },
  { additionalProperties: false },
);

export const CreateCommand = Type.Object(
  {
    type: Type.Union(COMMAND_TYPES.map((t) => Type.Literal(t))),
    args: Type.Optional(CommandArgs),
    /** One host (common.v2.Host.id, "<ip>-<hostname>[-seed]")… */
    host_id: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    /** …or every daemon of a scheduler cluster connected when the command is sent. */
    scheduler_cluster_id: Type.Optional(Id),
    /** Seconds a host has to answer. */
    timeout: Type.Optional(Type.Integer({ minimum: 1, maximum: 600, default: 30 })),
  },
  { additionalProperties: false },
);

/** What a host reported besides success (the fields of its command's type). */
export const CommandOutput = Type.Object({
  tasks_removed: Type.Optional(Type.Integer()),
  bytes_freed: Type.Optional(Type.Integer()),
  previous_log_level: Type.Optional(Type.String()),
  schedulers: Type.Optional(Type.Array(Type.String())),
  schedulers_changed: Type.Optional(Type.Boolean()),
});

const State = Type.Union([Type.Literal("PENDING"), Type.Literal("SUCCESS"), Type.Literal("FAILURE")]);

export const HostCommandResult = Type.Object({
  host_id: Type.String(),
  hostname: Type.String(),
  state: State,
  error: Type.String(),
  result: CommandOutput,
  finished_at: Type.Union([Timestamp, Type.Null()]),
});

export const HostCommand = Type.Object({
  id: Type.Integer(),
  tenant_id: Type.Integer(),
  user_id: Type.Union([Type.Integer(), Type.Null()]),
  type: Type.String(),
  args: CommandArgs,
  host_id: Type.Union([Type.String(), Type.Null()]),
  scheduler_cluster_id: Type.Union([Type.Integer(), Type.Null()]),
  timeout: Type.Integer(),
  /** PENDING while a host has not answered; SUCCESS when every host succeeded; FAILURE otherwise. */
  state: State,
  error: Type.String(),
  results: Type.Array(HostCommandResult),
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const ListCommandsQuery = Type.Object({ ...Page, type: Type.Optional(Type.String()), state: Type.Optional(State) });

export const ConnectedHost = Type.Object({
  host_id: Type.String(),
  hostname: Type.String(),
  ip: Type.String(),
  seed_peer: Type.Boolean(),
  scheduler_cluster_ids: Type.Array(Type.Integer()),
  connected_at: Timestamp,
});
