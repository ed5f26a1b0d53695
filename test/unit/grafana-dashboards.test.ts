// The Grafana dashboards in deploy/grafana ask only for what we export: every PromQL expression
// parses (Prometheus' own grammar, after Grafana's variable interpolation), and every metric it
// selects — with the labels it matches on — is registered by the component the dashboard is
// for. The registries are built the way each server builds its own, without starting one.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parser } from "@prometheus-io/lezer-promql";
import type { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createRegistry } from "../../src/common/metrics.js";
import { grpcServerMetrics } from "../../src/common/grpc/metrics.js";
import { daemonMetrics } from "../../src/daemon/metrics.js";
import { proxyMetrics } from "../../src/daemon/proxy/metrics.js";
import { createSchedulerMetrics } from "../../src/scheduler/metrics.js";
import { ManagerMetrics } from "../../src/manager/metrics.js";

const DIR = join(import.meta.dirname, "../../deploy/grafana");

function registryOf(component: string): Registry {
  const registry = createRegistry();
  grpcServerMetrics(registry);
  if (component === "dfdaemon") {
    daemonMetrics(registry);
    proxyMetrics(registry);
  } else if (component === "scheduler") createSchedulerMetrics(registry);
  else if (component === "manager") new ManagerMetrics(registry);
  else throw new Error(`no registry for a dashboard named ${component}`);
  return registry;
}

/** Series names a metric is exposed under, each with the labels it carries. */
function exposed(registry: Registry): Map<string, Set<string>> {
  const names = new Map<string, Set<string>>();
  for (const m of registry.getMetricsAsArray()) {
    // prom-client keeps each metric's label names on the metric; its types leave them out.
    const labels = new Set((m as { labelNames?: string[] }).labelNames ?? []);
    const type = String(m.type);
    const suffixes = type === "histogram" ? [["_bucket", "le"], ["_sum"], ["_count"]] : type === "summary" ? [["", "quantile"], ["_sum"], ["_count"]] : [[""]];
    for (const [suffix = "", extra] of suffixes) names.set(m.name + suffix, extra ? new Set([...labels, extra]) : labels);
  }
  return names;
}

interface Panel {
  title?: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}

function expressions(file: string): Array<{ panel: string; expr: string }> {
  const dashboard = JSON.parse(readFileSync(join(DIR, file), "utf8")) as { panels: Panel[] };
  const out: Array<{ panel: string; expr: string }> = [];
  const walk = (ps: Panel[]) => {
    for (const p of ps) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ panel: p.title ?? "", expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(dashboard.panels);
  return out;
}

/** Grafana interpolates its variables before Prometheus sees the query. */
const interpolate = (expr: string) => expr.replaceAll("$__rate_interval", "1m").replaceAll("$instance", ".*");

interface Selector {
  metric: string;
  labels: string[];
}

function parse(expr: string): { errors: string[]; selectors: Selector[] } {
  const errors: string[] = [];
  const selectors: Selector[] = [];
  parser.parse(expr).iterate({
    enter: (n) => {
      if (n.type.isError) errors.push(`at ${n.from}: ${JSON.stringify(expr.slice(n.from, n.to + 10))}`);
      if (n.name === "VectorSelector") {
        const id = n.node.getChild("Identifier");
        const labels = n.node.getChild("LabelMatchers")?.getChildren("UnquotedLabelMatcher").map((m) => {
          const name = m.getChild("LabelName");
          return name ? expr.slice(name.from, name.to) : "";
        });
        if (id) selectors.push({ metric: expr.slice(id.from, id.to), labels: labels ?? [] });
        else errors.push(`selector without a metric name: ${expr.slice(n.from, n.to)}`);
      }
    },
  });
  return { errors, selectors };
}

const files = readdirSync(DIR).filter((f) => f.endsWith(".json"));

describe("Grafana dashboards", () => {
  it("exist for the manager, the scheduler and dfdaemon", () => {
    expect(files.sort()).toEqual(["dfdaemon.json", "manager.json", "scheduler.json"]);
  });

  for (const file of files) {
    it(`${file}: every expression parses and selects only metrics and labels we register`, () => {
      const names = exposed(registryOf(file.replace(/\.json$/, "")));
      const exprs = expressions(file);
      expect(exprs.length).toBeGreaterThan(10);
      const problems: string[] = [];
      for (const { panel, expr } of exprs) {
        const { errors, selectors } = parse(interpolate(expr));
        for (const e of errors) problems.push(`${panel}: does not parse ${e}`);
        if (selectors.length === 0) problems.push(`${panel}: selects no metric: ${expr}`);
        for (const s of selectors) {
          const labels = names.get(s.metric);
          if (!labels) problems.push(`${panel}: ${s.metric} is not registered`);
          // instance and job are the labels Prometheus adds to every scraped series.
          else for (const l of s.labels) if (l !== "instance" && l !== "job" && !labels.has(l)) problems.push(`${panel}: ${s.metric} has no label ${l}`);
        }
      }
      expect(problems).toEqual([]);
    });
  }

  it("catches a metric we do not register and an expression that does not parse", () => {
    const names = exposed(registryOf("dfdaemon"));
    expect(names.has("dragonfly_client_download_task_duration_milliseconds_bucket")).toBe(true);
    expect(names.has("dragonfly_client_concurrent_upload_piece_total")).toBe(false);
    expect(parse(interpolate("sum(rate(dragonfly_client_upload_traffic[$__rate_interval])")).errors).not.toEqual([]);
    expect(parse('rate(dragonfly_client_download_traffic{type="REMOTE_PEER"}[1m])').selectors).toEqual([{ metric: "dragonfly_client_download_traffic", labels: ["type"] }]);
  });
});
