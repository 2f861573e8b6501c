/**
 * Sessions are not stored separately: a summary is derived from the session's events —
 * `session.start` (who, from where, which application and database), `session.end` (when, why)
 * and the count of `query.start`. Both backends select the same columns and map them here.
 */
import type { Actor, Source } from '../audit/event.js';
import type { SessionSummary } from './store.js';

export interface SessionRow {
  id: string;
  connection: string | null;
  actor: Actor | null;
  source: Source | null;
  data: Record<string, unknown>;
  started_at: string;
  ended_at: string | null;
  end_data: Record<string, unknown> | null;
  statements: number;
}

export function sessionSummaryOf(row: SessionRow): SessionSummary {
  const application = row.data['application'];
  const endReason = row.end_data?.['reason'];
  const reason = row.data['reason'];
  return {
    id: row.id,
    connection: row.connection ?? '',
    subject: row.actor?.subject ?? '',
    email: row.actor?.email ?? null,
    groups: row.actor?.groups ?? [],
    source_address: row.source?.address ?? null,
    client_application: typeof application === 'string' ? application : (row.source?.application ?? null),
    started_at: row.started_at,
    ended_at: row.ended_at,
    statements: row.statements,
    end_reason: typeof endReason === 'string' ? endReason : null,
    reason: typeof reason === 'string' ? reason : null,
  };
}
