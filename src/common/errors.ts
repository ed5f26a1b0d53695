// What every log line and error reply says about a caught value: its message when it is an
// Error, else its string form (a rejected promise may carry anything).
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
