// SVG of per-peer completion over time: one panel per run (the swarm, the direct-origin
// baseline), one line per peer, a dashed line at the ideal time (file size / link bandwidth),
// so a reader sees the swarm fill.
import type { ProgressSample } from "./swarm.js";

export interface PlotRun {
  title: string;
  /** One series per peer: bytes landed over time. */
  peers: ProgressSample[][];
}

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function niceStep(max: number): number {
  const raw = max / 6;
  const pow = 10 ** Math.floor(Math.log10(raw));
  return ([1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? raw) || 1;
}

export function completionSvg(title: string, size: number, idealSeconds: number, runs: PlotRun[]): string {
  const W = 520;
  const H = 360;
  const m = { l: 56, r: 16, t: 40, b: 48 };
  const tMax = Math.max(idealSeconds, ...runs.flatMap((r) => r.peers.flatMap((p) => p.map((s) => s.t / 1000)))) * 1.05 || 1;
  const step = niceStep(tMax);
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W * runs.length}" height="${H + 30}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="${(W * runs.length) / 2}" y="20" text-anchor="middle" font-size="15">${esc(title)}</text>`);
  runs.forEach((run, k) => {
    const ox = k * W;
    const x = (t: number) => ox + m.l + (t / tMax) * pw;
    const y = (f: number) => m.t + 10 + ph - f * ph;
    parts.push(`<text x="${ox + m.l + pw / 2}" y="${m.t}" text-anchor="middle" font-size="13">${esc(run.title)}</text>`);
    parts.push(`<rect x="${ox + m.l}" y="${m.t + 10}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
    for (let t = 0; t <= tMax; t += step) {
      parts.push(`<line x1="${x(t)}" y1="${y(0)}" x2="${x(t)}" y2="${y(0) + 4}" stroke="#444"/>`);
      parts.push(`<text x="${x(t)}" y="${y(0) + 16}" text-anchor="middle">${Number(t.toFixed(2))}</text>`);
    }
    for (let f = 0; f <= 1.0001; f += 0.25) {
      parts.push(`<line x1="${ox + m.l - 4}" y1="${y(f)}" x2="${ox + m.l}" y2="${y(f)}" stroke="#444"/>`);
      parts.push(`<text x="${ox + m.l - 6}" y="${y(f) + 4}" text-anchor="end">${Math.round(f * 100)}%</text>`);
    }
    parts.push(`<text x="${ox + m.l + pw / 2}" y="${y(0) + 34}" text-anchor="middle">seconds since the downloads started</text>`);
    parts.push(`<line x1="${x(idealSeconds)}" y1="${y(0)}" x2="${x(idealSeconds)}" y2="${y(1)}" stroke="#000" stroke-dasharray="4 4"/>`);
    parts.push(`<text x="${x(idealSeconds) + 4}" y="${y(1) + 14}">ideal</text>`);
    run.peers.forEach((samples, i) => {
      const pts = samples.map((s) => `${x(s.t / 1000).toFixed(1)},${y(Math.min(1, s.bytes / size)).toFixed(1)}`).join(" ");
      parts.push(`<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.2" points="${pts}"/>`);
    });
  });
  parts.push(`<text x="8" y="${H + 22}" fill="#555">each line is one peer's share of the file landed; dashed: file size / link bandwidth</text>`);
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
