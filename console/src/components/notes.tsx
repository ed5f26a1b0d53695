// Inline messages: an error under a form or table, a hint when a list is empty.
import type { ComponentChildren } from "preact";

export function ErrorNote({ error }: { error: string | undefined }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {error}
    </p>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

export function Loading() {
  return <p class="loading">Loading…</p>;
}
