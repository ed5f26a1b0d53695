// Evaluator registry: `scheduler.algorithm` picks one by name.
import type { SchedulerConfig } from "../../config.js";
import { AbEvaluator } from "./ab.js";
import { BandwidthEvaluator } from "./bandwidth.js";
import { DefaultEvaluator } from "./default.js";
import type { Evaluator } from "./evaluator.js";

export type { Evaluator } from "./evaluator.js";

export function newEvaluator(name: "default" | "bandwidth"): Evaluator {
  return name === "bandwidth" ? new BandwidthEvaluator() : new DefaultEvaluator();
}

export function evaluatorFromConfig(cfg: SchedulerConfig["scheduler"]): Evaluator {
  if (cfg.algorithm === "ab") return new AbEvaluator(newEvaluator(cfg.ab.a), newEvaluator(cfg.ab.b));
  return newEvaluator(cfg.algorithm);
}
