// Which version of the origin's content a download is assembling, and which parents may add to
// it (#20). A task id names a URL, not a version: when the origin changes, peers that fetched
// the task at different times hold different versions under the same id, and a peer taking
// pieces from both, or from parents and from the origin, would assemble bytes that are neither.
//
// The scheduler's protocol carries no validator (common.v2.Task has no response headers), but
// each parent tells its own: DfdaemonUpload.StatLocalTask answers with the response headers the
// parent's task was pinned to (Damselfly keeps them equal to its pin). A peer asks each parent
// once, after the parent's first SyncPieces report (a parent that holds a piece has settled on
// its version), and before taking any piece from it:
//
// - A peer that holds nothing yet and has not gone to the origin joins the swarm's version:
//   it adopts the first parent's pin (a later peer inherits the version its parents have,
//   as Dragonfly serves a cached task without asking the origin again).
// - Once settled, parents of another version are not used (they would mix).
// - A parent that cannot tell (a Dragonfly peer without StatLocalTask, an origin without
//   validators) is used, but the pieces it gave are not vouched for by the pin: going back to
//   source then fetches the whole content in one response and checks every piece already held
//   against it (TaskManager.backToSource), so a difference fails the task instead of mixing.
import { Metadata } from "@grpc/grpc-js";
import { comparePins, describePin, hasValidator, pinFromHeaders, type OriginPin } from "../backend/pin.js";
import type { UploadClientPool } from "../piece/parents.js";

export type Admission = { use: true; adopted: boolean } | { use: false; reason: string };

export class TaskPin {
  /** Decisions per parent peer id, so later rounds do not ask a parent again. */
  private readonly decided = new Map<string, boolean>();

  constructor(
    /** The version this download assembles. */
    public pin: OriginPin,
    /** Whether the version is settled: pieces of it landed or are being fetched, or a parent was taken. */
    public settled: boolean,
    /** Whether every piece held is known to be of `pin` (false once a parent that cannot tell served us). */
    public vouched = true,
  ) {}

  /** The decision already made about a parent, if any. */
  decision(peerId: string): boolean | undefined {
    return this.decided.get(peerId);
  }

  /** Decides about a parent whose task is pinned to `theirs` (undefined: it cannot tell). */
  admit(peerId: string, theirs: OriginPin | undefined): Admission {
    const a = this.decide(theirs);
    this.decided.set(peerId, a.use);
    return a;
  }

  private decide(theirs: OriginPin | undefined): Admission {
    if (theirs !== undefined && theirs.contentLength !== this.pin.contentLength) {
      // Pieces of another length do not even line up with ours.
      return { use: false, reason: `the parent's task is ${theirs.contentLength} bytes long, this one ${this.pin.contentLength}` };
    }
    if (theirs === undefined || !hasValidator(theirs)) {
      this.settled = true;
      this.vouched = false;
      return { use: true, adopted: false };
    }
    const relation = comparePins(this.pin, theirs);
    if (relation === "same") {
      this.settled = true;
      return { use: true, adopted: false };
    }
    if (!this.settled) {
      this.pin = theirs;
      this.settled = true;
      return { use: true, adopted: true };
    }
    if (relation === "unknown") {
      this.vouched = false;
      return { use: true, adopted: false };
    }
    return { use: false, reason: `the parent holds ${describePin(theirs)}, this task is pinned to ${describePin(this.pin)}` };
  }
}

/** What a parent's task is pinned to, with the headers it was pinned by. */
export interface ParentPin {
  pin: OriginPin;
  responseHeader: Record<string, string>;
}

/**
 * Asks a parent which version its task is of (DfdaemonUpload.StatLocalTask): one call per
 * parent and download, not per piece. Undefined when it cannot tell (no such RPC, an error,
 * no answer within `timeoutMs`).
 */
export function askParent(clients: UploadClientPool, host: { ip: string; port: number }, taskId: string, timeoutMs: number): Promise<ParentPin | undefined> {
  return new Promise((resolve) => {
    clients.get(host.ip, host.port).statLocalTask({ taskId }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err || !res || res.contentLength === undefined) return resolve(undefined);
      // Other implementations need not lower-case the names as we do.
      const headers = Object.fromEntries(Object.entries(res.responseHeader).map(([k, v]) => [k.toLowerCase(), v]));
      resolve({ pin: pinFromHeaders(headers, res.contentLength), responseHeader: headers });
    });
  });
}
