// How times and values read in tables.

/** "3 s ago", "5 min ago", or the local date and time for anything older than a day. */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "never";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.round((now - t) / 1000);
  if (s < 0) return when(iso);
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return when(iso);
}

export function when(iso: string | null | undefined): string {
  if (!iso) return "never";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** A job's source: its URL, or its first URL and how many more. */
export function jobTarget(args: { url?: string; urls?: string[]; task_id?: unknown }): string {
  if (args.url) return args.url;
  const urls = args.urls ?? [];
  if (urls.length > 0) return urls.length === 1 ? (urls[0] ?? "") : `${urls[0] ?? ""} (+${urls.length - 1})`;
  return typeof args.task_id === "string" ? args.task_id : "";
}
