// Previous/next over a paged list (the manager's page and per_page, X-Total-Count).
export function Pager({ page, perPage, total, onPage }: { page: number; perPage: number; total: number; onPage: (page: number) => void }) {
  const last = Math.max(1, Math.ceil(total / perPage));
  if (total <= perPage) return null;
  return (
    <nav class="pager" aria-label="pages">
      <button type="button" disabled={page <= 1} onClick={() => onPage(page - 1)}>
        ← Previous
      </button>
      <span>
        page {page} of {last} ({total} in all)
      </span>
      <button type="button" disabled={page >= last} onClick={() => onPage(page + 1)}>
        Next →
      </button>
    </nav>
  );
}
