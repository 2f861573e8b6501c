/**
 * The end of a session opened under a time-bound access grant: when the grant ends, so does the
 * session (tunnel.ts ends it with a FATAL that says why). The end is known when the session is
 * admitted, so no signal between replicas is needed: each replica times its own sessions.
 *
 * At the grant's end the store is asked once more: a later grant of the same person on the same
 * connection, approved meanwhile, carries the session on to its own end. If the store cannot
 * answer, the session ends (fail closed). A timer cannot wait longer than about 24.8 days
 * (setTimeout's limit), so a longer wait is taken in steps.
 */
import type { ApprovalRequest } from '../api/types.js';

/** The longest setTimeout delay Node honours (a longer one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface GrantEndOptions {
  /** The grant the session was admitted under. */
  grant: ApprovalRequest;
  /** The grant open now for the same person and connection (ApprovalService.activeGrant), or null. */
  next: () => Promise<ApprovalRequest | null>;
  /** The session must end: `grant` is the one that ended; `error` is set if the store could not be asked. */
  onEnd: (grant: ApprovalRequest, error?: unknown) => void;
  now?: () => number;
}

export interface GrantEnd {
  /** The grant the session runs under now (a later one may have carried it on). */
  readonly current: ApprovalRequest;
  /** Stops the timer (the session ended by itself). */
  stop(): void;
}

export function endWithGrant(o: GrantEndOptions): GrantEnd {
  const now = o.now ?? Date.now;
  let current = o.grant;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;

  const arm = (): void => {
    if (stopped) return;
    const wait = Date.parse(current.expires_at) - now();
    if (wait > 0) {
      timer = setTimeout(arm, Math.min(wait, MAX_TIMER_MS));
      timer.unref();
      return;
    }
    timer = null;
    void o.next().then(
      (later) => {
        if (stopped) return;
        if (later && Date.parse(later.expires_at) > now()) {
          current = later;
          return arm();
        }
        stopped = true;
        o.onEnd(current);
      },
      (err: unknown) => {
        if (stopped) return;
        stopped = true;
        o.onEnd(current, err);
      },
    );
  };
  arm();

  return {
    get current() {
      return current;
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}
