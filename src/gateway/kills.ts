/**
 * Ending a live session on whichever gateway holds it (`hoop sessions kill`).
 *
 *   POST /api/v1/sessions/{id}/kill on any replica
 *     -> session.kill recorded (who asked, why), then a row in the store's session_kills
 *     -> the replica that holds the session learns of it: at once if it is this one (endHere),
 *        on a PostgreSQL NOTIFY (watchKills), or at its next poll of killsFor (the fallback
 *        when a notification was lost)
 *     -> the session's `ending` signal is aborted with the FATAL text; the engine ends the
 *        session at a message boundary, cancels what runs upstream, and session.end records
 *        "killed by <admin>: <reason>"
 *
 * A request stays in the store: a session is only ever killed once, and a late poll of an
 * ended session finds nothing to end.
 */
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { SessionKill, Store } from '../store/store.js';

export type { SessionKill } from '../store/store.js';

/** How often a gateway holding sessions asks the store for kill requests it may have missed. */
export const KILL_POLL_MS = 2_000;

/** What the session's user is told (the FATAL message). */
export function killMessage(kill: SessionKill): string {
  return `hoop: this session was ended by ${kill.requested_by}${kill.reason ? `: ${kill.reason}` : ''}`;
}

/** What session.end records as the reason. */
export function killReason(kill: SessionKill): string {
  return `killed by ${kill.requested_by}${kill.reason ? `: ${kill.reason}` : ''}`;
}

export class SessionKills {
  /** This gateway's live sessions: id -> how to end it. */
  private readonly held = new Map<string, (kill: SessionKill) => void>();
  private timer: NodeJS.Timeout | null = null;
  private stopWatching: (() => Promise<void>) | null = null;
  private polling = false;
  /** Ids asked about while a check was in flight: checked right after it. */
  private readonly again = new Set<string>();

  constructor(private readonly o: { store: Store; logger: Logger; pollMs?: number }) {}

  /** Starts listening for kill requests from other replicas and polling for missed ones. */
  async start(): Promise<void> {
    try {
      this.stopWatching = await this.o.store.watchKills((id) => {
        if (this.held.has(id)) void this.check([id]);
      });
    } catch (err) {
      // The poll still finds every request, only later.
      this.o.logger.warn({ err: errorMessage(err) }, 'cannot listen for session kills; polling only');
    }
    this.timer = setInterval(() => {
      if (this.held.size > 0) void this.check([...this.held.keys()]);
    }, this.o.pollMs ?? KILL_POLL_MS);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.stopWatching?.().catch(() => {});
    this.stopWatching = null;
  }

  /** A live session of this gateway, and how to end it; returns the function that forgets it. */
  hold(sessionId: string, end: (kill: SessionKill) => void): () => void {
    this.held.set(sessionId, end);
    return () => {
      if (this.held.get(sessionId) === end) this.held.delete(sessionId);
    };
  }

  /** Ends the session now if this gateway holds it. */
  endHere(kill: SessionKill): boolean {
    const end = this.held.get(kill.session_id);
    if (!end) return false;
    this.held.delete(kill.session_id);
    end(kill);
    return true;
  }

  /** One store read at a time; a wake-up during it is not lost but checked next. */
  private async check(ids: string[]): Promise<void> {
    if (this.polling) {
      for (const id of ids) this.again.add(id);
      return;
    }
    this.polling = true;
    try {
      for (let next = ids; next.length > 0; next = [...this.again].filter((id) => this.held.has(id))) {
        this.again.clear();
        for (const kill of await this.o.store.killsFor(next)) {
          if (this.endHere(kill)) this.o.logger.info({ session: kill.session_id, requested_by: kill.requested_by }, 'session killed');
        }
      }
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err) }, 'cannot read session kills');
    } finally {
      this.again.clear();
      this.polling = false;
    }
  }
}
