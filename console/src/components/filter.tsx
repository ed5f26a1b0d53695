// A labelled <select> above a list; changing it narrows the list (and goes back to its first page).
export function FilterSelect({ name, label, value, options, onChange }: { name: string; label: string; value: string; options: readonly string[]; onChange: (v: string) => void }) {
  return (
    <label>
      {label}{" "}
      <select name={name} value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">any</option>
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}
