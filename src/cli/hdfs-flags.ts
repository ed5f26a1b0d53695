// dfget's HDFS flag (issue 23), named as Dragonfly's dfget names it (also read from
// DFGET_HDFS_DELEGATION_TOKEN, as Dragonfly's, which keeps the token off the process list),
// filling the download's HDFS options for hdfs:// URLs only: other URLs never carry the token
// to the daemon.
import { Option, type Command } from "commander";
import type { HDFS } from "../gen/common/v2/common.js";

export interface HdfsFlags {
  hdfsDelegationToken?: string;
}

export function addHdfsOptions(program: Command): Command {
  return program.addOption(new Option("--hdfs-delegation-token <token>", "delegation token for a secured HDFS (WebHDFS's delegation parameter)").env("DFGET_HDFS_DELEGATION_TOKEN"));
}

/** The download's HDFS options from the flags, or undefined for a URL that is not hdfs://. */
export function hdfsOf(url: string, f: HdfsFlags): HDFS | undefined {
  if (new URL(url).protocol !== "hdfs:") return undefined;
  return { delegationToken: f.hdfsDelegationToken };
}
