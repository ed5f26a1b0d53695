// What a daemon does with each command of the manager's command channel (issue 25;
// command-channel.ts carries them): one GC pass now, delete one task, change the log level of
// the process, re-read the scheduler list. Every command answers once with a result; a failure
// is the result's one-line error, never a thrown exception that would end the stream.
import type { Logger } from "../../common/logger.js";
import { errorMessage } from "../../common/errors.js";
import type { Command, CommandResult } from "../../gen/damselfly/manager/v1/commands.js";
import type { Storage } from "../storage/storage.js";

/** pino's levels (common/logger.ts). */
const LEVELS = new Set(["trace", "debug", "info", "warn", "error", "fatal", "silent"]);

export interface CommandDeps {
  storage: Storage;
  /** One GC pass with the daemon's policy (gc.ts runGc). */
  gc(): Promise<void>;
  /** The process's root logger: children made from it follow its level. */
  log: Logger;
  /** Asks the manager for schedulers now; resolves with the schedulers in use and whether they changed. */
  refresh(): Promise<{ schedulers: string[]; changed: boolean }>;
}

const empty = (commandId: string): CommandResult => ({ commandId, error: "", tasksRemoved: 0, bytesFreed: 0, previousLogLevel: "", schedulers: [], schedulersChanged: false });

export class CommandExecutor {
  constructor(private readonly deps: CommandDeps) {}

  /** Runs `cmd` and resolves with its result; never rejects. */
  async run(cmd: Command): Promise<CommandResult> {
    const result = empty(cmd.id);
    try {
      const c = cmd.command;
      switch (c?.$case) {
        case "gc":
          return { ...result, ...(await this.gc()) };
        case "deleteTask":
          return { ...result, ...(await this.deleteTask(c.deleteTask.taskId)) };
        case "setLogLevel":
          return { ...result, previousLogLevel: this.setLogLevel(c.setLogLevel.level) };
        case "refreshConfig": {
          const r = await this.deps.refresh();
          return { ...result, schedulers: r.schedulers, schedulersChanged: r.changed };
        }
        default:
          // A newer manager's command this daemon does not know.
          return { ...result, error: "unknown command: this daemon's version does not implement it" };
      }
    } catch (e) {
      return { ...result, error: errorMessage(e) };
    } finally {
      this.deps.log.info({ commandId: cmd.id, command: cmd.command?.$case ?? "unknown" }, "manager command run");
    }
  }

  private async gc(): Promise<Pick<CommandResult, "tasksRemoved" | "bytesFreed">> {
    const { storage } = this.deps;
    const before = { tasks: storage.list().length, bytes: storage.usedBytes() };
    await this.deps.gc();
    return { tasksRemoved: Math.max(0, before.tasks - storage.list().length), bytesFreed: Math.max(0, before.bytes - storage.usedBytes()) };
  }

  private async deleteTask(taskId: string): Promise<Pick<CommandResult, "tasksRemoved" | "bytesFreed">> {
    const task = this.deps.storage.get(taskId);
    if (!task) throw new Error(`task ${taskId} is not in this daemon's storage`);
    // Removing a task under a download would fail that download; the operator may retry after it.
    if (task.meta.state === "running") throw new Error(`task ${taskId} is downloading; delete it when it is done`);
    await this.deps.storage.delete(taskId);
    return { tasksRemoved: 1, bytesFreed: task.meta.contentLength };
  }

  /** Sets the level; returns the one before. */
  private setLogLevel(level: string): string {
    if (!LEVELS.has(level)) throw new Error(`log level "${level}" is not one of ${[...LEVELS].join(", ")}`);
    const previous = this.deps.log.level;
    this.deps.log.level = level;
    return previous;
  }
}
