// `damselfly doctor`: tells an operator which fast paths this host really supports. Every
// check exercises the feature (see native/core/src/probe.rs) instead of trusting uname.
// With --mirror it checks the registry mirror instead (doctor-mirror.ts).
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { addonVersion, defaultPieceServePath, probeHost, type ProbeReport, type ServePath } from "../native/index.js";

export const CAPABILITIES = ["ioUring", "oDirect", "tmpfs", "sendfile", "zstd", "aesGcm"] as const;
export type Capability = (typeof CAPABILITIES)[number];

/** Codecs have no fallback, so the daemon cannot run without them; the I/O paths fall back
 * to buffered reads/writes, so they are required only with --strict. */
const ALWAYS_REQUIRED: readonly Capability[] = ["zstd", "aesGcm"];

export interface DoctorOptions {
  dataDir: string;
  tmpfsDir: string;
  strict: boolean;
}

export interface DoctorReport {
  node: string;
  addon: string;
  ioUring: boolean;
  oDirect: boolean;
  tmpfs: boolean;
  sendfile: boolean;
  zstd: boolean;
  aesGcm: boolean;
  /** Body path the piece server uses by default, chosen by measurement (bench piece-serve-paths). */
  pieceServePath: ServePath;
  /** Why each false capability is false. */
  reasons: Partial<Record<Capability, string>>;
  dataDir: string;
  tmpfsDir: string;
  required: Capability[];
  ok: boolean;
}

export function runDoctor(options: DoctorOptions): DoctorReport {
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const probes: ProbeReport = probeHost({ dataDir, tmpfsDir: options.tmpfsDir });
  const required = options.strict ? [...CAPABILITIES] : [...ALWAYS_REQUIRED];
  const reasons: Partial<Record<Capability, string>> = {};
  for (const cap of CAPABILITIES) {
    const p = probes[cap];
    if (!p.ok) reasons[cap] = p.reason ?? "unknown failure";
  }
  return {
    node: process.version,
    addon: addonVersion().addon,
    ioUring: probes.ioUring.ok,
    oDirect: probes.oDirect.ok,
    tmpfs: probes.tmpfs.ok,
    sendfile: probes.sendfile.ok,
    zstd: probes.zstd.ok,
    aesGcm: probes.aesGcm.ok,
    pieceServePath: defaultPieceServePath(),
    reasons,
    dataDir,
    tmpfsDir: options.tmpfsDir,
    required,
    ok: required.every((cap) => probes[cap].ok),
  };
}

export function formatDoctor(r: DoctorReport): string {
  const lines = [`node     ${r.node}`, `addon    ${r.addon}`, `dataDir  ${r.dataDir}`];
  for (const cap of CAPABILITIES) {
    const need = r.required.includes(cap) ? "required" : "optional";
    const reason = r.reasons[cap];
    lines.push(`${cap.padEnd(9)}${r[cap] ? "ok  " : "FAIL"} (${need})${reason ? `: ${reason}` : ""}`);
  }
  lines.push(`pieceServePath ${r.pieceServePath}`);
  lines.push(r.ok ? "doctor: all required capabilities work" : "doctor: a required capability failed");
  return lines.join("\n");
}
