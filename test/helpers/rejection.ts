// The error a promise is expected to reject with, narrowed by `is`; anything else (another kind
// of error, or no rejection at all) fails the test.
export async function rejection<E>(p: Promise<unknown>, is: (e: unknown) => e is E): Promise<E> {
  try {
    await p;
  } catch (e) {
    if (is(e)) return e;
    throw e;
  }
  throw new Error("expected a rejection");
}
