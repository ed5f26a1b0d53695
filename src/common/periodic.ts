// A background job on a timer that never overlaps itself: a run still going when the next tick
// comes is left to finish, and stop() waits for it, so shutdown never races a half-done pass.
export interface Periodic {
  stop(): Promise<void>;
}

export function runEvery(everyMs: number, run: () => Promise<void>, onError: (err: unknown) => void): Periodic {
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = run()
      .catch(onError)
      .finally(() => {
        running = undefined;
      });
  }, everyMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
