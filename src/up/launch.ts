// Runs a CLI of this checkout by name through tsx from the sources, for development and the
// e2e swarm harness: `node --import tsx src/up/launch.ts up --data-dir DIR`,
// `... launch.ts dfget URL -O FILE`, `... launch.ts dfctl task ls`, `... launch.ts dfdaemon --config FILE`,
// `... launch.ts damselfly scheduler --config FILE`. `damselfly up` prints it as the dfget
// example when it runs from the sources.
import { register as registerUp } from "../cli/commands/up.js";
import { newProgram, runProgram } from "../cli/program.js";

const [cli, ...rest] = process.argv.slice(2);
if (cli === "up") {
  const program = newProgram("damselfly", "Damselfly: the whole system on loopback");
  registerUp(program);
  process.exitCode = await runProgram(program, ["up", ...rest]);
} else if (cli === "dfget") {
  process.exitCode = await (await import("../cli/dfget.js")).main(rest);
} else if (cli === "dfdaemon") {
  process.exitCode = await (await import("../cli/dfdaemon.js")).main(rest);
} else if (cli === "dfctl") {
  process.exitCode = await (await import("../cli/dfctl.js")).main(rest);
} else if (cli === "dfcache") {
  process.exitCode = await (await import("../cli/dfcache.js")).main(rest);
} else if (cli === "damselfly") {
  process.exitCode = await (await import("../cli/damselfly.js")).main(rest);
} else {
  process.stderr.write("usage: launch <up|dfget|dfctl|dfcache|dfdaemon|damselfly> [args...]\n");
  process.exitCode = 2;
}
