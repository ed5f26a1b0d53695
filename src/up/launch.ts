// Runs a CLI of this checkout by name, from the built files or through tsx from the sources:
// `node --import tsx src/up/launch.ts up --data-dir DIR` or `... launch.ts dfget URL -O FILE`.
// `damselfly up` prints it as the dfget example when it runs from the sources.
import { register as registerUp } from "../cli/commands/up.js";
import { main as dfget } from "../cli/dfget.js";
import { newProgram, runProgram } from "../cli/program.js";

const [cli, ...rest] = process.argv.slice(2);
if (cli === "up") {
  const program = newProgram("damselfly", "Damselfly: the whole system on loopback");
  registerUp(program);
  process.exitCode = await runProgram(program, ["up", ...rest]);
} else if (cli === "dfget") {
  process.exitCode = await dfget(rest);
} else {
  process.stderr.write("usage: launch <up|dfget> [args...]\n");
  process.exitCode = 2;
}
