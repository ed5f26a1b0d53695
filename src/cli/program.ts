// Shared commander setup: every CLI reports errors as one line and returns an exit code
// instead of calling process.exit, so tests can run `main()` in-process.
import { Command, CommanderError } from "commander";
import { VERSION } from "../common/version.js";
import { errorMessage } from "../common/errors.js";

export function newProgram(name: string, description: string): Command {
  return new Command(name)
    .description(description)
    .version(VERSION, "-V, --version")
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str.startsWith(`${name}:`) ? str : `${name}: ${str}`) })
    .showHelpAfterError(false);
}

/** Runs a commander program and maps its outcome to an exit code. */
export async function runProgram(program: Command, argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    const msg = errorMessage(e);
    process.stderr.write(`${program.name()}: ${msg}\n`);
    return 1;
  }
}
