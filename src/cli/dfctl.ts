// `dfctl`: inspect and control the local dfdaemon. Its commands arrive with the daemon issue; until then it
// answers --help and --version and refuses anything else with a clear message.
import { newProgram, runProgram } from "./program.js";

export async function main(argv: string[]): Promise<number> {
  const program = newProgram("dfctl", "inspect and control the local dfdaemon");
  program.argument("[args...]").action(() => {
    throw new Error("not available in this build yet: the daemon path lands with the dfdaemon issue");
  });
  return runProgram(program, argv);
}
