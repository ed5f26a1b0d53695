// Sends the webhook outbox. A delivery is claimed with a lease (an atomic UPDATE of one row picked
// FOR UPDATE SKIP LOCKED, as the job runner claims jobs), so with several managers on one
// PostgreSQL exactly one sends each attempt, and one whose manager died is picked up when the
// lease runs out. Each attempt is a POST of the stored body, signed (signature.ts), through the
// SSRF policy's agent, without following redirects. A 2xx ends the delivery (SUCCESS, never sent
// again); a network error, timeout or any other status schedules a retry after an exponential
// backoff with jitter, until `maxAttempts`, then FAILURE. The lease outlasts the request timeout,
// so an attempt in flight is never claimed twice; the one window left is a crash after the
// receiver answered 2xx and before the row is updated — then the same delivery id comes again,
// which is what X-Damselfly-Delivery is for.
import { randomUUID } from "node:crypto";
import { request, type Dispatcher } from "undici";
import { errorMessage } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import type { SsrfPolicy } from "../../common/ssrf.js";
import { VERSION } from "../../common/version.js";
import type { Database } from "../db/database.js";
import type { WebhookDeliveryRow, WebhookRow } from "../db/rows.js";
import { DELIVERY_HEADER, EVENT_HEADER, signPayload, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "./signature.js";
import { CoalescedPoll } from "../coalesced-poll.js";

export interface WebhookDispatcherOptions {
  db: Database;
  logger: Logger;
  ssrf: SsrfPolicy;
  /** Attempts of one delivery before it is marked FAILURE. */
  maxAttempts?: number;
  /** Delay before the first retry; doubles on each further one (ms). */
  backoffMs?: number;
  /** Longest delay between two attempts (ms). */
  maxBackoffMs?: number;
  /** Deadline of one attempt, connection to end of the response (ms). */
  timeoutMs?: number;
  /** How often to look for due deliveries when not woken (other managers' events, retries). */
  pollIntervalMs?: number;
  /** Deliveries sent at once. */
  concurrency?: number;
}

export const DEFAULT_MAX_ATTEMPTS = 8;

/**
 * Delay before attempt `attempt + 1` after `attempt` failed: base·2^(attempt-1) capped at `max`,
 * then drawn uniformly from its upper half ("equal jitter"), so managers retrying together spread
 * out while the delay still grows.
 */
export function retryDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** A claimed delivery with what sending it needs of its webhook. */
type Claimed = Pick<WebhookDeliveryRow, "id" | "delivery_id" | "event" | "body" | "attempts"> & Pick<WebhookRow, "url" | "secret" | "auth_header" | "skip_cert_verify" | "active">;

type Outcome = { ok: true; status: number } | { ok: false; status: number | null; error: string };

export class WebhookDispatcher {
  /** This manager's name on the leases it takes. */
  readonly owner = `webhooks-${randomUUID()}`;
  private readonly agent: Dispatcher;
  /** For webhooks with skip_cert_verify: the same SSRF checks, any certificate. */
  private readonly insecureAgent: Dispatcher;
  private readonly running = new Set<Promise<void>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private poller: NodeJS.Timeout | undefined;
  private stopped = true;
  private readonly polls = new CoalescedPoll(
    () => this.poll(),
    (err: unknown) => this.opts.logger.error({ err }, "webhook poll failed"),
  );

  constructor(private readonly opts: WebhookDispatcherOptions) {
    this.agent = opts.ssrf.agent();
    this.insecureAgent = opts.ssrf.agent({ connect: { rejectUnauthorized: false } });
  }

  private get maxAttempts() {
    return this.opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  }
  private get timeoutMs() {
    return this.opts.timeoutMs ?? 10_000;
  }
  /** Long enough that an attempt always ends (its timeout) before another manager may take it. */
  private get leaseMs() {
    return 2 * this.timeoutMs + 30_000;
  }

  start(): void {
    this.stopped = false;
    this.polls.start();
    this.poller = setInterval(() => this.wake(), this.opts.pollIntervalMs ?? 1000);
    this.poller.unref();
    this.wake();
  }

  /** Looks for due deliveries now (called when events were written). */
  wake(): void {
    this.polls.wake();
  }

  /** Wakes when a retry scheduled `ms` from now is due, without waiting for the next poll. */
  private wakeIn(ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.wake();
    }, ms);
    t.unref();
    this.timers.add(t);
  }

  private async poll(): Promise<void> {
    const limit = this.opts.concurrency ?? 4;
    while (!this.stopped && this.running.size < limit) {
      const d = await this.claim();
      if (!d) return;
      const p = this.send(d)
        .catch((err: unknown) => this.opts.logger.error({ err, delivery: d.delivery_id }, "webhook delivery failed unexpectedly"))
        .finally(() => {
          this.running.delete(p);
          this.wake();
        });
      this.running.add(p);
    }
  }

  private async claim(): Promise<Claimed | undefined> {
    const [row] = await this.opts.db.query<Claimed>(
      `WITH c AS (
         UPDATE webhook_deliveries SET lease_owner = $1, lease_until = now() + make_interval(secs => $2::double precision), attempts = attempts + 1, updated_at = now()
         WHERE id = (SELECT id FROM webhook_deliveries WHERE state = 'PENDING' AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now())
                     ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, webhook_id, delivery_id, event, body, attempts)
       SELECT c.id, c.delivery_id, c.event, c.body, c.attempts, w.url, w.secret, w.auth_header, w.skip_cert_verify, w.active FROM c JOIN webhooks w ON w.id = c.webhook_id`,
      [this.owner, this.leaseMs / 1000],
    );
    return row;
  }

  private async attempt(d: Claimed): Promise<Outcome> {
    if (!d.active) return { ok: false, status: null, error: "the webhook is inactive" };
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": `Damselfly-Webhook/${VERSION}`,
      [EVENT_HEADER]: d.event,
      [DELIVERY_HEADER]: d.delivery_id,
      [TIMESTAMP_HEADER]: String(timestamp),
      [SIGNATURE_HEADER]: signPayload(d.secret, timestamp, d.body),
    };
    if (d.auth_header) headers.authorization = d.auth_header;
    try {
      const res = await request(d.url, {
        method: "POST",
        headers,
        body: d.body,
        dispatcher: d.skip_cert_verify ? this.insecureAgent : this.agent,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      await res.body.dump().catch(() => undefined);
      if (res.statusCode >= 200 && res.statusCode < 300) return { ok: true, status: res.statusCode };
      return { ok: false, status: res.statusCode, error: `receiver answered HTTP ${res.statusCode}` };
    } catch (err) {
      return { ok: false, status: null, error: errorMessage(err).slice(0, 1024) };
    }
  }

  private async send(d: Claimed): Promise<void> {
    const log = this.opts.logger.child({ delivery: d.delivery_id, event: d.event, attempt: d.attempts });
    const outcome = await this.attempt(d);
    // Only the lease holder records the outcome (as the job runner's finish()).
    if (outcome.ok) {
      await this.opts.db.query(
        "UPDATE webhook_deliveries SET state = 'SUCCESS', status_code = $1, error = '', delivered_at = now(), next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now() WHERE id = $2 AND lease_owner = $3",
        [outcome.status, d.id, this.owner],
      );
      log.debug({ status: outcome.status }, "webhook delivered");
      return;
    }
    const final = !d.active || d.attempts >= this.maxAttempts;
    const delay = final ? 0 : retryDelay(d.attempts, this.opts.backoffMs ?? 30_000, this.opts.maxBackoffMs ?? 3_600_000);
    // A final failure has no next attempt: make_interval(NULL) makes next_attempt_at NULL.
    await this.opts.db.query(
      `UPDATE webhook_deliveries SET state = $1, status_code = $2, error = $3, lease_owner = NULL, lease_until = NULL, updated_at = now(),
         next_attempt_at = now() + make_interval(secs => $4::double precision)
       WHERE id = $5 AND lease_owner = $6`,
      [final ? "FAILURE" : "PENDING", outcome.status, outcome.error, final ? null : delay / 1000, d.id, this.owner],
    );
    log.info({ status: outcome.status, error: outcome.error, ...(final ? { final: true } : { retryInMs: delay }) }, final ? "webhook delivery failed" : "webhook attempt failed, will retry");
    if (!final) this.wakeIn(delay);
  }

  /** Stops claiming and waits for attempts in flight to be recorded. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.poller) clearInterval(this.poller);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    // A claim in progress still sends what it claimed, rather than leaving it leased for minutes.
    await this.polls.stop();
    await Promise.allSettled([...this.running]);
    await Promise.all([this.agent.close(), this.insecureAgent.close()]);
  }
}
