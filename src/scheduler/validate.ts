// Input checks for everything a remote party sends, mirroring the protoc-gen-validate rules
// of Dragonfly's api (so a request the Go scheduler refuses is refused here too) plus size
// limits and address rules of our own. Each failure names the field and carries a status code.
import { status } from "@grpc/grpc-js";
import { isIP } from "node:net";
import { Priority, TaskType, type Download, type Host as HostMessage, type Piece } from "../gen/common/v2/common.js";
import { MAX_PIECE_LENGTH, MIN_PIECE_LENGTH } from "../common/piece.js";

export class RequestError extends Error {
  override name = "RequestError";
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

/** Throws an authorizer's denial (common/grpc/authz.ts) as the RequestError that answers the call. */
export function allow(denial: { code: status; details: string } | undefined): void {
  if (denial) throw new RequestError(denial.code, denial.details);
}

export const LIMITS = {
  id: 1024,
  hostname: 255,
  url: 8192,
  description: 4096,
  headerCount: 256,
  headerBytes: 64 * 1024,
  filteredQueryParams: 256,
  candidateParents: 1000,
  string: 4096,
} as const;

const invalid = (msg: string) => new RequestError(status.INVALID_ARGUMENT, msg);

export function checkString(field: string, value: string | undefined, max: number, required = false): void {
  if (value === undefined || value === "") {
    if (required) throw invalid(`${field} is required`);
    return;
  }
  if (value.length > max) throw invalid(`${field} is ${value.length} characters long, over the limit of ${max}`);
}

export function checkIds(ids: { hostId?: string; taskId?: string; peerId?: string }): void {
  for (const [k, v] of Object.entries(ids)) checkString(k.replace(/Id$/, "_id"), v, LIMITS.id, true);
}

const DIGEST_RE = /^(?:md5:[0-9a-fA-F]{32}|sha1:[0-9a-fA-F]{40}|sha256:[0-9a-fA-F]{64}|sha512:[0-9a-fA-F]{128}|blake3:[0-9a-fA-F]{64}|crc32:[0-9a-fA-F]+)$/;
/** Piece digests: Dragonfly's clients send crc32 as decimal, which the hex charset accepts. */
const PIECE_DIGEST_RE = /^(?:md5|sha1|sha256|sha512|blake3|crc32):[0-9a-fA-F]+$/;

function checkHeader(field: string, header: Record<string, string>): void {
  const entries = Object.entries(header);
  if (entries.length > LIMITS.headerCount) throw invalid(`${field} has ${entries.length} entries, over the limit of ${LIMITS.headerCount}`);
  let bytes = 0;
  for (const [k, v] of entries) bytes += k.length + v.length;
  if (bytes > LIMITS.headerBytes) throw invalid(`${field} is ${bytes} bytes, over the limit of ${LIMITS.headerBytes}`);
}

export function checkUrl(field: string, url: string): void {
  checkString(field, url, LIMITS.url, true);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw invalid(`${field} "${url.slice(0, 200)}" is not an absolute URI`);
  }
  if (!/^[a-z][a-z0-9+.-]*:$/i.test(u.protocol)) throw invalid(`${field} has an invalid scheme`);
}

export function isDefinedPriority(p: Priority): boolean {
  return Object.values(Priority).includes(p) && p !== Priority.UNRECOGNIZED;
}

export function checkDownload(d: Download | undefined): Download {
  if (!d) throw invalid("register_peer_request.download is required");
  const f = "download";
  checkUrl(`${f}.url`, d.url);
  if (d.digest !== undefined && d.digest !== "" && !DIGEST_RE.test(d.digest)) throw invalid(`${f}.digest "${d.digest.slice(0, 200)}" is not <md5|sha1|sha256|sha512|blake3|crc32>:<hex>`);
  if (!Object.values(TaskType).includes(d.type) || d.type === TaskType.UNRECOGNIZED) throw invalid(`${f}.type ${d.type} is not a defined TaskType`);
  if (!isDefinedPriority(d.priority)) throw invalid(`${f}.priority ${d.priority} is not a defined Priority`);
  checkString(`${f}.tag`, d.tag, LIMITS.string);
  checkString(`${f}.application`, d.application, LIMITS.string);
  if (d.filteredQueryParams.length > LIMITS.filteredQueryParams) throw invalid(`${f}.filtered_query_params has ${d.filteredQueryParams.length} entries, over the limit of ${LIMITS.filteredQueryParams}`);
  for (const p of d.filteredQueryParams) checkString(`${f}.filtered_query_params`, p, LIMITS.string);
  checkHeader(`${f}.request_header`, d.requestHeader);
  if (d.pieceLength !== undefined && (d.pieceLength < MIN_PIECE_LENGTH || d.pieceLength > MAX_PIECE_LENGTH)) {
    throw invalid(`${f}.piece_length ${d.pieceLength} is outside [${MIN_PIECE_LENGTH}, ${MAX_PIECE_LENGTH}]`);
  }
  if (d.remoteIp !== undefined && d.remoteIp !== "" && isIP(d.remoteIp) === 0) throw invalid(`${f}.remote_ip "${d.remoteIp.slice(0, 100)}" is not an IP address`);
  checkString(`${f}.output_path`, d.outputPath, LIMITS.string);
  checkString(`${f}.content_for_calculating_task_id`, d.contentForCalculatingTaskId, LIMITS.url);
  if (d.range && d.range.length === 0 && d.range.start !== 0) throw invalid(`${f}.range has zero length`);
  // The three actual_* fields describe one piece layout; contradicting values would make
  // peers disagree about piece boundaries.
  const len = d.actualContentLength;
  const pl = d.actualPieceLength;
  const count = d.actualPieceCount;
  if (pl !== undefined && pl === 0 && len !== undefined && len > 0) throw invalid(`${f}.actual_piece_length is 0 for ${len} bytes of content`);
  if (len !== undefined && pl !== undefined && pl > 0 && count !== undefined) {
    const expected = len === 0 ? 0 : Math.ceil(len / pl);
    if (count !== expected) throw invalid(`${f}.actual_piece_count ${count} contradicts actual_content_length ${len} with actual_piece_length ${pl} (expected ${expected} pieces)`);
  }
  if (len !== undefined && count !== undefined && pl === undefined && ((len === 0) !== (count === 0))) {
    throw invalid(`${f}.actual_piece_count ${count} contradicts actual_content_length ${len}`);
  }
  return d;
}

/** Piece reports must carry cost and created_at (Go requires both) and a parseable digest. */
export function checkPiece(field: string, piece: Piece | undefined): Piece {
  if (!piece) throw invalid(`${field}.piece is required`);
  if (!piece.cost) throw invalid(`${field}.piece.cost is required`);
  if (!piece.createdAt) throw invalid(`${field}.piece.created_at is required`);
  if (piece.cost.seconds < 0 || piece.cost.nanos < 0) throw invalid(`${field}.piece.cost is negative`);
  if (piece.digest !== "" && (piece.digest.length > 200 || !PIECE_DIGEST_RE.test(piece.digest))) throw invalid(`${field}.piece.digest "${piece.digest.slice(0, 100)}" is not <algorithm>:<hex>`);
  checkString(`${field}.piece.parent_id`, piece.parentId, LIMITS.id);
  return piece;
}

// --- addresses ---------------------------------------------------------------------------

function ipv4Octets(ip: string): number[] | undefined {
  const m = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.(\d+)$/i.exec(ip);
  return m ? m.slice(1, 5).map(Number) : undefined;
}

export function isLoopback(ip: string): boolean {
  const v4 = ipv4Octets(ip);
  if (v4) return v4[0] === 127;
  return ip === "::1" || /^0*:0*:0*:0*:0*:0*:0*:0*1$/.test(ip);
}

export function isLinkLocal(ip: string): boolean {
  const v4 = ipv4Octets(ip);
  if (v4) return v4[0] === 169 && v4[1] === 254;
  return /^fe[89ab][0-9a-f]?:/i.test(ip);
}

function isUnspecifiedOrMulticast(ip: string): boolean {
  const v4 = ipv4Octets(ip);
  if (v4) return v4.every((o) => o === 0) || ((v4[0] ?? 0) >= 224 && (v4[0] ?? 0) <= 239);
  return ip === "::" || /^ff/i.test(ip);
}

/** "ipv4:1.2.3.4:5", "1.2.3.4:5", "[::1]:5" (grpc-js getPeer forms) → bare address. */
export function callerAddress(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, "");
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(p);
  if (bracket) return bracket[1] ?? p;
  const lastColon = p.lastIndexOf(":");
  if (lastColon > 0 && p.indexOf(":") === lastColon) return p.slice(0, lastColon);
  return p;
}

/**
 * The scheduler dials announced hosts (seed-peer triggers, health checks), so an announced
 * address must not let a remote caller aim it at the scheduler's own loopback or at
 * link-local services such as cloud metadata endpoints.
 */
export function checkHostAddress(ip: string, caller: string): void {
  if (isIP(ip) === 0) throw invalid(`host.ip "${ip.slice(0, 100)}" is not an IP address`);
  if (isUnspecifiedOrMulticast(ip)) throw invalid(`host.ip ${ip} is unspecified or multicast`);
  if (isLinkLocal(ip)) throw invalid(`host.ip ${ip} is link-local`);
  if (isLoopback(ip) && !isLoopback(caller)) throw invalid(`host.ip ${ip} is loopback but the announcement came from ${caller}`);
}

export function checkHost(host: HostMessage | undefined, caller: string): HostMessage {
  if (!host) throw invalid("host is required");
  checkString("host.id", host.id, LIMITS.id, true);
  checkString("host.hostname", host.hostname, LIMITS.hostname, true);
  checkString("host.name", host.name, LIMITS.hostname);
  for (const k of ["os", "platform", "platformFamily", "platformVersion", "kernelVersion"] as const) checkString(`host.${k}`, host[k], LIMITS.string);
  if (host.type > 3) throw invalid(`host.type ${host.type} is not 0 (normal), 1 (super), 2 (strong) or 3 (weak)`);
  if (host.port < 1024 || host.port >= 65535) throw invalid(`host.port ${host.port} is outside [1024, 65535)`);
  if (host.downloadPort < 1024 || host.downloadPort >= 65535) throw invalid(`host.download_port ${host.downloadPort} is outside [1024, 65535)`);
  checkString("host.network.idc", host.network?.idc, LIMITS.string);
  checkString("host.network.location", host.network?.location, LIMITS.string);
  checkHostAddress(host.ip, caller);
  return host;
}
