// `damselfly`: the umbrella CLI — up (the whole system), doctor, the control-plane processes and
// runtime mirror setup (init).
import { register as registerInit } from "./commands/init.js";
import { register as registerManager } from "./commands/manager.js";
import { register as registerScheduler } from "./commands/scheduler.js";
import { register as registerUp } from "./commands/up.js";
import { formatDoctor, runDoctor } from "./doctor.js";
import { checkMirror, defaultProxyAddr, formatMirrorReport, PROXY_ADDR_HELP } from "./doctor-mirror.js";
import { newProgram, runProgram } from "./program.js";

export async function main(argv: string[]): Promise<number> {
  const program = newProgram("damselfly", "Damselfly: P2P file and image distribution, Dragonfly v2 compatible.");
  program
    .command("doctor")
    .description("check which fast I/O paths and codecs work on this host; with --mirror, that an image pulls through the registry mirror and the swarm")
    .option("--json", "print the report as JSON")
    .option("--data-dir <dir>", "directory where piece files will be stored", ".damselfly")
    .option("--tmpfs-dir <dir>", "tmpfs directory for the memory tier", "/dev/shm")
    .option("--strict", "treat io_uring, O_DIRECT, tmpfs and sendfile as required too")
    .option("--mirror <image>", "pull IMAGE (host[:port]/repo[:tag|@digest]) through the mirror as containerd's catch-all does: manifest, config and smallest layer")
    .option("--proxy-addr <url>", PROXY_ADDR_HELP)
    .action(async (opts: { json?: boolean; dataDir: string; tmpfsDir: string; strict?: boolean; mirror?: string; proxyAddr?: string }) => {
      if (opts.mirror !== undefined) {
        const mirror = await checkMirror({ image: opts.mirror, proxyAddr: opts.proxyAddr ?? defaultProxyAddr() });
        process.stdout.write(`${opts.json ? JSON.stringify(mirror, null, 2) : formatMirrorReport(mirror)}\n`);
        if (!mirror.ok) process.exitCode = 1;
        return;
      }
      if (opts.proxyAddr !== undefined) throw new Error("--proxy-addr is for --mirror");
      const report = runDoctor({ dataDir: opts.dataDir, tmpfsDir: opts.tmpfsDir, strict: opts.strict === true });
      process.stdout.write(`${opts.json ? JSON.stringify(report, null, 2) : formatDoctor(report)}\n`);
      if (!report.ok) process.exitCode = 1;
    });
  registerUp(program);
  registerScheduler(program);
  registerManager(program);
  registerInit(program);
  return runProgram(program, argv);
}
