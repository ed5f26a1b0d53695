// How a webhook delivery proves where it came from (the scheme GitHub and Stripe use, with the
// timestamp signed so that a captured request cannot be replayed later):
//
//   X-Damselfly-Timestamp: <unix seconds of this attempt>
//   X-Damselfly-Signature: sha256=<lowercase hex of HMAC-SHA256(secret, "<timestamp>.<raw body>")>
//
// A receiver recomputes the HMAC over the timestamp header, a "." and the raw request body bytes
// (before any JSON parsing), compares in constant time, and rejects timestamps too far from its
// clock. X-Damselfly-Delivery is the delivery's id: every retry of one delivery carries the same
// id, so receivers de-duplicate on it.
import { createHmac, timingSafeEqual } from "node:crypto";

export const EVENT_HEADER = "x-damselfly-event";
export const DELIVERY_HEADER = "x-damselfly-delivery";
export const TIMESTAMP_HEADER = "x-damselfly-timestamp";
export const SIGNATURE_HEADER = "x-damselfly-signature";

export const SIGNATURE_SCHEME =
  "Each request carries X-Damselfly-Event (the event type), X-Damselfly-Delivery (the delivery id, the same on every retry: de-duplicate on it), " +
  "X-Damselfly-Timestamp (unix seconds of the attempt) and X-Damselfly-Signature: sha256=<hex HMAC-SHA256 keyed with the secret over \"<timestamp>.<raw body>\">.";

/** The X-Damselfly-Signature value of one attempt. */
export function signPayload(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.`).update(body).digest("hex")}`;
}

/** Whether `signature` is the one `secret` gives for this timestamp and body (constant-time compare). */
export function verifySignature(secret: string, timestamp: number, body: string, signature: string): boolean {
  const expected = Buffer.from(signPayload(secret, timestamp, body));
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
