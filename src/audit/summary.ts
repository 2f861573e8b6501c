/**
 * One row per recorded statement, from the events of a range read in seq order: the `csv`
 * export format and a bundle's `summary.csv` (docs/audit-report.md).
 *
 * A statement is its `query.start` (who, when, the text, the parameters, the decision taken on
 * it) joined with its `query.end` (outcome, rows, bytes, duration, masked values) by
 * `data.query_id`, whatever else is interleaved between them (other sessions, approvals). Only
 * `data` is read, never the recorded result rows: memory holds the statements still open, not
 * what they returned. A statement whose `query.end` is not in the range is reported with outcome
 * `unknown` by `finish()`, never as if it had succeeded; a `query.end` whose `query.start` is
 * before the range is counted (`unmatchedEnds`), not guessed into a row.
 *
 * Approvals: the decision recorded in `query.start` names the request that let the statement
 * run (`decision.approval`, statement-policy.ts) or that was denied or expired
 * (`decision.access`), with its approvers; when it names none, those of the request's
 * `approval.decided` / `approval.used` events seen earlier in the range are used.
 */
import type { Actor, AuditEvent } from './event.js';

export interface StatementRow {
  /** query.start time (RFC 3339). */
  time: string;
  /** actor.email ?? actor.subject */
  user: string;
  groups: string[];
  connection: string | null;
  session_id: string | null;
  query_id: string;
  /** query.start data.statement (or its `statements` joined with `; ` if it has no text). */
  statement: string;
  parameters: unknown[] | null;
  /** query.end outcome, or 'unknown' when no query.end is in the range. */
  outcome: string;
  rows: number | null;
  bytes: number | null;
  duration_ms: number | null;
  /** Keys of query.end data.masked (the labels), with their counts in masked_counts. */
  masked_columns: string[];
  masked_counts: Record<string, number>;
  /** The approval request that let it run (or that was denied / expired). */
  approval_id: string | null;
  /** Who approved that request (subjects). */
  approvers: string[];
  start_seq: number;
  /** The query.end's seq: it links to the recorded result. */
  end_seq: number | null;
  /** A Parse or Bind recorded on its own (its Execute is another row); absent when executed. */
  phase?: 'parse' | 'bind' | null;
  /** The recorded text was cut at the payload limit (statement_sha256 in the event covers all of it). */
  statement_truncated?: boolean;
  /** The error the client received (`CODE: message`), e.g. why a statement was refused. */
  error?: string | null;
}

/** The person an event is about, as every audit view names them: the email, else the subject. */
export function userOf(actor: Actor | null | undefined): string {
  if (!actor) return '';
  return typeof actor.email === 'string' && actor.email !== '' ? actor.email : actor.subject;
}

/** Requests whose approvers are remembered from approval.decided / approval.used (oldest dropped first). */
const REMEMBERED_REQUESTS = 10_000;

export class StatementSummarizer {
  private readonly open = new Map<string, StatementRow>();
  private readonly approvers = new Map<string, string[]>();
  /** query.end events whose query.start was not in the range. */
  unmatchedEnds = 0;

  /** Feed events in seq order; returns the rows this event completed (a query.end closes its query.start). */
  add(e: AuditEvent): StatementRow[] {
    switch (e.type) {
      case 'query.start':
        this.start(e);
        return [];
      case 'query.end':
        return this.end(e);
      case 'approval.decided':
        this.decided(e);
        return [];
      case 'approval.used':
        this.used(e);
        return [];
      default:
        return [];
    }
  }

  /** Statements whose query.end is not in the range: outcome 'unknown', in the order they started. */
  finish(): StatementRow[] {
    const rows = [...this.open.values()];
    this.open.clear();
    return rows;
  }

  private start(e: AuditEvent): void {
    const d = e.data;
    const queryId = str(d['query_id']);
    if (queryId === null) return;
    const decision = obj(d['decision']);
    const approval = obj(decision?.['approval']) ?? obj(decision?.['access']);
    const approvalId = str(approval?.['request']);
    const recorded = strings(approval?.['approvers']);
    const refusal = decision?.['action'] === 'refuse' ? `${str(decision['code']) ?? ''}: ${str(decision['message']) ?? ''}` : null;
    const phase = d['phase'] === 'parse' || d['phase'] === 'bind' ? d['phase'] : null;
    this.open.set(queryId, {
      time: e.time,
      user: userOf(e.actor),
      groups: e.actor ? [...e.actor.groups] : [],
      connection: e.connection,
      session_id: e.session_id,
      query_id: queryId,
      statement: statementOf(d),
      parameters: Array.isArray(d['parameters']) ? (d['parameters'] as unknown[]) : null,
      outcome: 'unknown',
      rows: null,
      bytes: null,
      duration_ms: null,
      masked_columns: [],
      masked_counts: {},
      approval_id: approvalId,
      approvers: recorded ?? (approvalId !== null ? this.approvers.get(approvalId) ?? [] : []),
      start_seq: e.seq,
      end_seq: null,
      phase,
      statement_truncated: d['statement_truncated'] === true,
      error: refusal,
    });
  }

  private end(e: AuditEvent): StatementRow[] {
    const d = e.data;
    const queryId = str(d['query_id']);
    const row = queryId === null ? undefined : this.open.get(queryId);
    if (!row) {
      this.unmatchedEnds++;
      return [];
    }
    this.open.delete(queryId!);
    const masked = obj(d['masked']) ?? {};
    const counts: Record<string, number> = {};
    for (const [label, n] of Object.entries(masked)) if (typeof n === 'number' && Number.isFinite(n)) counts[label] = n;
    const error = obj(d['error']);
    row.outcome = str(d['outcome']) ?? 'unknown';
    row.rows = num(d['rows']);
    row.bytes = num(d['bytes']);
    row.duration_ms = num(d['duration_ms']);
    row.masked_columns = Object.keys(counts);
    row.masked_counts = counts;
    row.end_seq = e.seq;
    if (error) row.error = `${str(error['code']) ?? ''}: ${str(error['message']) ?? ''}`;
    return [row];
  }

  /** An approver's decision that took effect (one the store refused carries `refused`). */
  private decided(e: AuditEvent): void {
    const id = str(e.data['request']);
    if (id === null || e.data['decision'] !== 'approve' || e.data['refused'] !== undefined || !e.actor) return;
    const known = this.approvers.get(id) ?? [];
    if (!known.includes(e.actor.subject)) this.remember(id, [...known, e.actor.subject]);
  }

  private used(e: AuditEvent): void {
    const id = str(e.data['request']);
    const approvers = strings(e.data['approvers']);
    if (id !== null && approvers) this.remember(id, approvers);
  }

  private remember(id: string, approvers: string[]): void {
    this.approvers.delete(id);
    this.approvers.set(id, approvers);
    if (this.approvers.size > REMEMBERED_REQUESTS) this.approvers.delete(this.approvers.keys().next().value!);
  }
}

function statementOf(d: Record<string, unknown>): string {
  const text = str(d['statement']);
  if (text !== null && text !== '') return text;
  const parts = strings(d['statements']);
  return parts ? parts.join('; ') : text ?? '';
}

/**
 * summary.csv, RFC 4180: CRLF after every line (the header included), a field quoted when it
 * holds a comma, a quote, CR or LF, quotes doubled. Lists and objects (groups, parameters,
 * masked_columns with their counts, approvers) are JSON. Against formula injection in
 * spreadsheets (OWASP "CSV injection"), a field that starts with = + - @ TAB or CR gets a `'`
 * in front; the exact text is in events.jsonl.
 */
export const SUMMARY_CSV_COLUMNS = [
  'time', 'user', 'groups', 'connection', 'session_id', 'query_id', 'phase', 'statement', 'statement_truncated', 'parameters',
  'outcome', 'error', 'rows', 'bytes', 'duration_ms', 'masked_columns', 'approval_id', 'approvers', 'start_seq', 'end_seq',
] as const;

export const SUMMARY_CSV_HEADER: string = `${SUMMARY_CSV_COLUMNS.join(',')}\r\n`;

export function summaryCsvLine(row: StatementRow): string {
  const fields: (string | number | null)[] = [
    row.time,
    row.user,
    JSON.stringify(row.groups),
    row.connection,
    row.session_id,
    row.query_id,
    row.phase ?? null,
    row.statement,
    row.statement_truncated ? 'true' : null,
    row.parameters === null ? null : JSON.stringify(row.parameters),
    row.outcome,
    row.error ?? null,
    row.rows,
    row.bytes,
    row.duration_ms,
    row.masked_columns.length === 0 ? null : JSON.stringify(Object.fromEntries(row.masked_columns.map((c) => [c, row.masked_counts[c] ?? 0]))),
    row.approval_id,
    JSON.stringify(row.approvers),
    row.start_seq,
    row.end_seq,
  ];
  return `${fields.map(csvField).join(',')}\r\n`;
}

/** Spreadsheets run a cell that starts with one of these as a formula. */
const FORMULA_START = /^[=+\-@\t\r]/;

export function csvField(value: string | number | null): string {
  if (value === null) return '';
  if (typeof value === 'number') return String(value);
  const safe = FORMULA_START.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function obj(v: unknown): Record<string, unknown> | null {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function strings(v: unknown): string[] | null {
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? [...(v as string[])] : null;
}
