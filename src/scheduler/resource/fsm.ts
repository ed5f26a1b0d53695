// A small finite-state machine: named events move between named states, and an event fired
// from a state it does not list is an error instead of a silent no-op, as with looplab/fsm
// in Dragonfly. State and event names are Dragonfly's, because they travel on the wire
// (Peer.state, Task.state).
export class FsmError extends Error {
  override name = "FsmError";
}

export type Transitions<S extends string, E extends string> = Record<E, { from: readonly S[]; to: S }>;

export class Fsm<S extends string, E extends string> {
  private state: S;

  constructor(
    initial: S,
    private readonly transitions: Transitions<S, E>,
    private readonly onEnter?: (to: S, from: S, event: E) => void,
  ) {
    this.state = initial;
  }

  get current(): S {
    return this.state;
  }

  is(...states: S[]): boolean {
    return states.includes(this.state);
  }

  can(event: E): boolean {
    return this.transitions[event].from.includes(this.state);
  }

  /** Moves to the event's target state; throws FsmError when the event is not allowed here. */
  fire(event: E): void {
    const t = this.transitions[event];
    if (!t.from.includes(this.state)) throw new FsmError(`event ${event} inappropriate in current state ${this.state}`);
    const from = this.state;
    this.state = t.to;
    this.onEnter?.(t.to, from, event);
  }
}
