// Tables of API rows: a header row from column names, and the four states of a loaded list —
// loading, failed, empty, or the rows.
import type { ComponentChildren } from "preact";
import { ErrorNote, Empty, Loading } from "./notes.js";

export function Table({ id, head, children }: { id?: string; head: string[]; children: ComponentChildren }) {
  return (
    <table id={id}>
      <thead>
        <tr>
          {head.map((h, i) => (
            <th key={i}>{h}</th>
          ))}
        </tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  );
}

/** `render(data)` once `data` is there; until then Loading, or the error; `empty` when `isEmpty(data)`. */
export function Listing<T>({ data, error, isEmpty, empty, render }: { data: T | undefined; error: string | undefined; isEmpty: (d: T) => boolean; empty: string; render: (d: T) => ComponentChildren }) {
  return (
    <>
      <ErrorNote error={error} />
      {data === undefined ? !error && <Loading /> : isEmpty(data) ? <Empty>{empty}</Empty> : render(data)}
    </>
  );
}

/** `ip:port`, as every host table shows an address. */
export function Address({ ip, port }: { ip: string; port: number }) {
  return (
    <td>
      {ip}:{port}
    </td>
  );
}
