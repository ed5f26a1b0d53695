// A console path that is no page.
import { Link } from "../router.js";

export function NotFound({ path }: { path: string }) {
  return (
    <section class="status-page">
      <p class="status-code">404</p>
      <h1>No such page</h1>
      <p>
        <code>{path}</code> is not a page of this console. <Link href="/">Overview</Link>
      </p>
    </section>
  );
}
