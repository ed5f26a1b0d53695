// One poll of a work table at a time (the job runner's jobs, the webhook dispatcher's
// deliveries): a wake-up while a poll runs is remembered and answered by one more poll after
// it, so a burst of events costs two polls, never overlapping ones, and none is lost.
export class CoalescedPoll {
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;

  constructor(
    private readonly poll: () => Promise<void>,
    private readonly onError: (err: unknown) => void,
  ) {}

  start(): void {
    this.stopped = false;
  }

  /** Polls now, or once more after the poll that is running. */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.poll()
      .catch(this.onError)
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  /** No more polls; resolves when the running one (if any) ended. */
  stop(): Promise<void> {
    this.stopped = true;
    return this.running ?? Promise.resolve();
  }
}
