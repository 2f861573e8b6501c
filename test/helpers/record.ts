/**
 * Reading hoop's record of one session back from the store, and checking it against the oracle
 * (the server's statement log, see server-log.ts).
 *
 * A session's statements are its `query.start` events joined with their `query.end` by
 * `data.query_id`:
 *   start.data: query_id, protocol, statement, statement_name, portal, parameters, statements?
 *   end.data:   outcome (ok|error|cancelled|refused|rolled_back|unknown), error {code, message},
 *               command_tags, rows, bytes, result {sets: [{columns, rows, tag, statement}], truncated, sha256}
 */
import { until } from './poll.js';
import { createHash } from 'node:crypto';
import type { AuditEvent } from '../../src/audit/event.js';
import { dataWithPayload } from '../../src/audit/payload.js';
import type { Store } from '../../src/store/store.js';
import type { LoggedStatement } from './server-log.js';

export interface RecordedStatement {
  queryId: string;
  start: AuditEvent;
  end: AuditEvent | null;
  /** start.data.statement */
  statement: string;
  /** end.data.outcome, or null when no query.end was written. */
  outcome: string | null;
  s: Record<string, any>;
  e: Record<string, any> | null;
}

export interface SessionRecord {
  sessionId: string;
  events: AuditEvent[];
  statements: RecordedStatement[];
  ended: boolean;
}

/**
 * Reads a store's events incrementally (only those after the last seen seq on each call): a
 * session with a huge statement is not read again on every poll.
 */
class EventTail {
  private lastSeq = 0;
  readonly events: AuditEvent[] = [];
  constructor(private readonly store: Store) {}
  async read(): Promise<AuditEvent[]> {
    const more = await this.store.readEvents({ afterSeq: this.lastSeq });
    for (const e of more) {
      this.events.push(e);
      this.lastSeq = Math.max(this.lastSeq, e.seq);
    }
    return this.events;
  }
}

export function pairStatements(events: AuditEvent[]): RecordedStatement[] {
  const ends = new Map<string, AuditEvent>();
  for (const e of events) if (e.type === 'query.end') ends.set(String(e.data['query_id']), e);
  return events
    .filter((e) => e.type === 'query.start')
    .map((start) => {
      const id = String(start.data['query_id']);
      const end = ends.get(id) ?? null;
      return {
        queryId: id,
        start,
        end,
        statement: String(start.data['statement']),
        outcome: end ? String(end.data['outcome']) : null,
        s: start.data as Record<string, any>,
        e: end ? (dataWithPayload(end) as Record<string, any>) : null, // with the rows, kept in its payload
      };
    });
}

/** The id of the session whose StartupMessage named `application` (polls until it is recorded). */
export async function sessionIdByApp(store: Store, application: string, timeoutMs = 10_000): Promise<string> {
  const start = await until(async () => (await store.readEvents({})).find((e) => e.type === 'session.start' && e.source?.application === application), { timeoutMs, what: `a session.start for application ${application}` });
  return start.session_id!;
}

/**
 * The record of a session. With `ended` (default), waits for its session.end, which the engine
 * writes after every query.end of the session: the record is then complete. Without, waits until
 * every query.start has its query.end (or the timeout), for a session still open.
 */
export async function recordOf(store: Store, sessionId: string, opts: { ended?: boolean; timeoutMs?: number } = {}): Promise<SessionRecord> {
  const wantEnd = opts.ended ?? true;
  const tail = new EventTail(store);
  let record!: SessionRecord;
  const settled = async () => {
    const events = (await tail.read()).filter((e) => e.session_id === sessionId);
    const statements = pairStatements(events);
    const ended = events.some((e) => e.type === 'session.end');
    record = { sessionId, events, statements, ended };
    return wantEnd ? ended : statements.every((s) => s.end !== null);
  };
  // Past the timeout the record is returned as it stands: the caller's assertions say what is missing.
  await until(settled, { timeoutMs: opts.timeoutMs ?? 10_000 }).catch(() => {});
  return record;
}

/** Rows the record kept for a statement, across its result sets. */
export function recordedRows(r: RecordedStatement): (string | null)[][] {
  return ((r.e?.['result']?.['sets'] ?? []) as { rows: (string | null)[][] }[]).flatMap((s) => s.rows);
}

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Outcomes that claim the statement ran. */
const RAN = new Set(['ok', 'rolled_back']);

/**
 * Whether a record names the same statement text as a server log entry. A record whose text
 * was cut at the payload limit matches by the SHA-256 of the whole text (`statement_sha256`).
 */
export function sameText(r: RecordedStatement, text: string): boolean {
  if (r.statement === text) return true;
  const h = r.s['statement_sha256'];
  return typeof h === 'string' && h === sha256(text) && text.startsWith(r.statement);
}

/**
 * The general rules, as a list of violations (empty when the record agrees with the server):
 *  1. every statement the server log shows for the session is in the record with the same text
 *     (a fastpath call: a record naming the function);
 *  2. no record claims a statement ran (outcome ok or rolled_back, with a command tag: an Execute
 *     or a Query, not a Parse or Bind of its own) that the server did not log.
 * A record that says it cannot name the statement (`unknown`) covers the Execute of its name.
 */
/** A record that says it cannot name what ran, for the prepared statement or portal the log names. */
function saysUnknownFor(r: RecordedStatement, l: LoggedStatement): boolean {
  return r.s['unknown'] === true && (l.kind === 'execute' || l.kind === 'fetch') && (r.s['statement_name'] === l.name || r.s['portal'] === l.portal);
}

export function ruleViolations(rec: RecordedStatement[], logged: LoggedStatement[]): string[] {
  const out: string[] = [];
  for (const l of logged) {
    if (l.kind === 'fastpath') {
      if (!rec.some((r) => r.statement.includes(l.name!))) out.push(`the server ran fastpath function ${l.name}, the record names no such call`);
    } else if (!rec.some((r) => sameText(r, l.text) || saysUnknownFor(r, l))) {
      out.push(`the server ran ${JSON.stringify(l.text.slice(0, 200))} (${l.kind}), the record has no statement with that text`);
    }
  }
  for (const r of rec) {
    if (!r.outcome || !RAN.has(r.outcome)) continue;
    const tags = (r.e?.['command_tags'] ?? []) as string[];
    if (tags.length === 0) continue;
    if (!logged.some((l) => l.kind !== 'fastpath' && (sameText(r, l.text) || saysUnknownFor(r, l)))) {
      out.push(`the record says ${JSON.stringify(r.statement.slice(0, 200))} ran (${r.outcome}, ${tags.join(',')}), the server log has no such statement`);
    }
  }
  return out;
}

/** A short view of a record for failure messages. */
export function brief(rec: RecordedStatement[]): unknown[] {
  return rec.map((r) => ({
    statement: r.statement.length > 120 ? `${r.statement.slice(0, 120)}…` : r.statement,
    outcome: r.outcome,
    error: r.e?.['error'] ?? null,
    tags: r.e?.['command_tags'],
    rows: recordedRows(r).slice(0, 10),
  }));
}
