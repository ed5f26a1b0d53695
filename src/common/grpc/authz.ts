// Who may call what on a server that runs mTLS: the caller's role comes from its client
// certificate (verified against the cluster CA during the handshake, see tls.ts), and a call
// whose role is not among those a method allows is denied with PERMISSION_DENIED. Each refused
// caller is logged once (by certificate name, else address), so a misconfigured or hostile host
// retrying every second does not flood the log.
//
// Without TLS there is no identity to check: the manager has no cluster token for gRPC (its
// tokens are users' personal access tokens for the REST open API), so a plaintext cluster is
// open to whoever reaches its ports, as a plaintext Dragonfly cluster is. SECURITY notes in the
// report; `damselfly up` runs with mTLS.
import type { PeerCertificate } from "node:tls";
import { status } from "@grpc/grpc-js";
import type { Logger } from "../logger.js";
import { hostNamesOf, identityOf, type Identity, type Role } from "../tls/identity.js";

/** Refused callers remembered for log-once; forgotten all at once past this many. */
const LOGGED_LIMIT = 10_000;

/** What a server call (unary or stream) tells about its caller. */
export interface CallerCall {
  getPeer(): string;
  getAuthContext(): { sslPeerCertificate?: PeerCertificate };
}

export interface Denial {
  code: typeof status.PERMISSION_DENIED;
  details: string;
}

export class Authorizer {
  private readonly logged = new Set<string>();

  /** `enforce`: the server runs mTLS (a plaintext server lets every call through). */
  constructor(
    readonly enforce: boolean,
    private readonly log: Logger,
  ) {}

  /** The verified identity of the caller, when it presented a certificate of our PKI. */
  static callerOf(call: Pick<CallerCall, "getAuthContext">): Identity | undefined {
    return identityOf(call.getAuthContext().sslPeerCertificate);
  }

  /**
   * undefined when `call` may go on; otherwise the status to answer with. `what` names the act
   * in the message and the log ("UpdateScheduler", "AnnounceHost as a seed peer").
   */
  check(call: CallerCall, what: string, roles: readonly Role[]): Denial | undefined {
    if (!this.enforce) return undefined;
    const id = Authorizer.callerOf(call);
    if (id && roles.includes(id.role)) return undefined;
    const who = Authorizer.describe(call, id);
    this.logOnce(call, id, "", { caller: who, peer: call.getPeer(), rpc: what, allowed: roles });
    return { code: status.PERMISSION_DENIED, details: `${what} needs a ${roles.join(" or ")} certificate; caller is ${who}` };
  }

  /**
   * undefined when the caller's certificate names host `hostname` (hostNamesOf: its name, CN or
   * a SAN DNS name), or the server runs plaintext; otherwise PERMISSION_DENIED, logged once per
   * caller and `what`. A scheduler binds announced hosts to their certificates with it: a host
   * is announced, re-announced, deleted and downloads as itself only (issue 21).
   */
  checkHostName(call: CallerCall, what: string, hostname: string): Denial | undefined {
    if (!this.enforce) return undefined;
    const names = hostNamesOf(call.getAuthContext().sslPeerCertificate);
    if (names.has(hostname)) return undefined;
    const named = names.size > 0 ? `names ${[...names].join(", ")}` : "names no host";
    return this.refuse(call, what, `${what}: host ${hostname.slice(0, 100)} is not a host the caller's certificate names (it ${named})`, { hostname: hostname.slice(0, 255) });
  }

  /**
   * A denial for a caller whose role `check` accepted but whom the method refuses on other
   * grounds (TenantKeys: a host of another tenant). `details` is the caller's answer and the log
   * line's reason; logged once per caller and `what`, like `check`'s refusals.
   */
  refuse(call: CallerCall, what: string, details: string, fields: Record<string, unknown> = {}): Denial {
    const id = Authorizer.callerOf(call);
    this.logOnce(call, id, what, { caller: Authorizer.describe(call, id), peer: call.getPeer(), rpc: what, reason: details, ...fields });
    return { code: status.PERMISSION_DENIED, details };
  }

  /** How messages name a caller: its certificate's role and name, else its address. */
  static describe(call: Pick<CallerCall, "getPeer">, id: Identity | undefined): string {
    return id ? `${id.role} ${id.name}` : `a certificate without a role (${call.getPeer()})`;
  }

  private logOnce(call: CallerCall, id: Identity | undefined, what: string, fields: Record<string, unknown>): void {
    const key = `${id ? `${id.role}/${id.name}` : call.getPeer().replace(/:\d+$/, "")}${what ? ` ${what}` : ""}`;
    if (this.logged.has(key)) return;
    if (this.logged.size >= LOGGED_LIMIT) this.logged.clear();
    this.logged.add(key);
    this.log.warn(fields, "permission denied (logged once per caller)");
  }
}
