/**
 * Constructed audit logs for the summary and report tests: events sealed into a real chain
 * (sealEvent), shaped as the gateway records them (session-audit.ts, statement-policy.ts,
 * approvals.ts, access.ts, routes.ts).
 */
import { randomUUID } from 'node:crypto';
import { GENESIS_HASH, sealEvent } from '../../src/audit/chain.js';
import type { Actor, AuditEvent, AuditEventType } from '../../src/audit/event.js';

export const actor = (name: string, groups: string[], email: string | null = `${name}@bank.example`): Actor => ({ subject: `apikey:${name}`, email, groups, auth_method: 'api_key' });

export class EventLog {
  readonly events: AuditEvent[] = [];
  private clock: number;
  private prev = GENESIS_HASH;

  constructor(start = Date.UTC(2026, 2, 3, 9, 0, 0), private readonly stepMs = 1_000) {
    this.clock = start;
  }

  /** The next events happen at `ms` (with a step of 0, all of them). */
  at(ms: number): this {
    this.clock = ms - this.stepMs;
    return this;
  }

  add(type: AuditEventType, who: Actor | null, data: Record<string, unknown>, where: { connection?: string | null; session?: string | null; time?: number; address?: string } = {}): AuditEvent {
    const time = where.time ?? (this.clock += this.stepMs);
    const e = sealEvent({
      id: randomUUID(), time: new Date(time).toISOString(), type, actor: who,
      source: { address: where.address ?? '127.0.0.1', application: 'psql' },
      connection: where.connection === undefined ? 'bank' : where.connection, session_id: where.session ?? null, data,
    }, this.events.length + 1, this.prev);
    this.prev = e.hash;
    this.events.push(e);
    return e;
  }

  session(who: Actor, connection = 'bank'): string {
    const id = randomUUID();
    this.add('session.start', who, { database: 'bank', user: who.subject, reason: null }, { connection, session: id });
    return id;
  }

  /** query.start; returns the query id. */
  start(who: Actor, session: string, statement: string, more: Record<string, unknown> = {}, connection = 'bank'): string {
    const id = randomUUID();
    this.add('query.start', who, { query_id: id, protocol: 'simple', statement, statement_name: null, portal: null, parameters: [], ...more }, { connection, session });
    return id;
  }

  end(who: Actor, session: string, queryId: string, more: Record<string, unknown> = {}, connection = 'bank'): AuditEvent {
    return this.add('query.end', who, {
      query_id: queryId, outcome: 'ok', error: null, command_tags: ['SELECT 1'], rows: 1, bytes: 10, duration_ms: 2,
      result: { sets: [], truncated: false, sha256: '0'.repeat(64) }, ...more,
    }, { connection, session });
  }

  /** A statement that ran: start and end. */
  ran(who: Actor, session: string, statement: string, end: Record<string, unknown> = {}, connection = 'bank'): string {
    const id = this.start(who, session, statement, {}, connection);
    this.end(who, session, id, end, connection);
    return id;
  }
}
