/**
 * What both store backends share about approval requests: the state a decision leads to, and
 * the validation of list filters. The backends only make each step atomic.
 *
 *   pending --approve (min_approvals distinct approvers)--> approved --markUsed--> used
 *   pending --deny (any one)--> denied
 *   pending / approved (unused) --past expires_at--> expired
 *   pending --cancel--> cancelled
 *
 * Every state but pending and approved is final. An approval opens a window of its own: a
 * statement may then be used for as long again as the request waited (`expires_at` moves to
 * the approval plus the original wait), and a grant lasts its `duration_ms` from the approval.
 */
import { REQUEST_STATUSES, type ApprovalRequest, type RequestStatus } from '../api/types.js';
import { UsageError } from '../errors.js';
import { normalizeLimit } from './filters.js';
import type { ApprovalDecisionInput, ApprovalFilter } from './store.js';

/** The status (and deadline) after one more decision, given the decisions already recorded. */
export function nextApprovalState(request: ApprovalRequest, d: ApprovalDecisionInput): { status: RequestStatus; expires_at: string } {
  if (d.decision === 'deny') return { status: 'denied', expires_at: request.expires_at };
  const approvers = new Set(request.approvals.filter((a) => a.decision === 'approve').map((a) => a.approver));
  approvers.add(d.approver);
  if (approvers.size < Math.max(1, request.min_approvals)) return { status: 'pending', expires_at: request.expires_at };
  const at = Date.parse(d.at);
  const window = request.kind === 'grant' && request.duration_ms !== null
    ? request.duration_ms
    : Date.parse(request.expires_at) - Date.parse(request.created_at);
  return { status: 'approved', expires_at: new Date(at + Math.max(0, window)).toISOString() };
}

/** When an approved grant's window opened: its approval, `duration_ms` before its end (`nextApprovalState`). */
export function grantStartMs(grant: Pick<ApprovalRequest, 'expires_at' | 'duration_ms'>): number {
  return Date.parse(grant.expires_at) - (grant.duration_ms ?? 0);
}

/** How many approved grants of one person and connection a lookup reads (newest-ending first). */
export const ACTIVE_GRANT_CANDIDATES = 20;

/** Of approved, unexpired grants (the backend's query), the longest-lasting one whose window has opened by `now`. */
export function pickActiveGrant(candidates: ApprovalRequest[], now: string): ApprovalRequest | null {
  const at = Date.parse(now);
  return candidates
    .filter((g) => g.kind === 'grant' && g.status === 'approved' && grantStartMs(g) <= at && at < Date.parse(g.expires_at))
    .sort((a, b) => Date.parse(b.expires_at) - Date.parse(a.expires_at))[0] ?? null;
}

/** Why a decision cannot be recorded on this request now, or null if it can. */
export function decisionRefusal(request: ApprovalRequest, d: ApprovalDecisionInput): 'not_pending' | 'already_decided' | 'expired' | null {
  if (request.status !== 'pending') return 'not_pending';
  if (Date.parse(request.expires_at) <= Date.parse(d.at)) return 'expired';
  if (request.approvals.some((a) => a.approver === d.approver)) return 'already_decided';
  return null;
}

export interface NormalizedApprovalFilter {
  status: RequestStatus[] | null;
  connection: string | null;
  requester: string | null;
  approverGroups: string[] | null;
  limit: number | null;
}

export function normalizeApprovalFilter(f: ApprovalFilter): NormalizedApprovalFilter {
  const status = f.status === undefined ? null : [...new Set(f.status)];
  for (const s of status ?? []) if (!REQUEST_STATUSES.includes(s)) throw new UsageError(`not a request status: ${JSON.stringify(String(s).slice(0, 20))}`);
  return {
    status,
    connection: f.connection ?? null,
    requester: f.requester ?? null,
    approverGroups: f.approverGroups === undefined ? null : [...new Set(f.approverGroups)],
    limit: normalizeLimit(f.limit),
  };
}

/** An instant as the stores keep it: UTC ISO with milliseconds. */
export function isoInstant(value: string): string {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new UsageError(`not a valid time: ${JSON.stringify(value.slice(0, 40))}`);
  return new Date(ms).toISOString();
}

/** A request row's columns, in INSERT order (both backends). */
export const APPROVAL_COLUMNS =
  'id, kind, connection, requester_subject, requester_email, requester_groups, statement, fingerprint, parameters, reason, rule, estimate, duration_ms, session_id, status, created_at, expires_at, updated_at, min_approvals, approvers';

/** A request as stored, apart from its decisions (arrays as each backend keeps them). */
export interface ApprovalRowBase<A> {
  id: string;
  kind: string;
  connection: string;
  requester_subject: string;
  requester_email: string | null;
  requester_groups: A;
  statement: string | null;
  fingerprint: string | null;
  parameters: string;
  reason: string | null;
  rule: string | null;
  estimate: number | null;
  duration_ms: number | string | null;
  session_id: string | null;
  status: string;
  created_at: string | Date;
  expires_at: string | Date;
  min_approvals: number;
  approvers: A;
}

export interface DecisionRow {
  request_id: string;
  approver: string;
  decision: string;
  comment: string | null;
  at: string | Date;
}

const iso = (v: string | Date): string => (v instanceof Date ? v.toISOString() : v);

/** The API shape of a stored request; `list` turns the backend's array column into a string[]. */
export function approvalOf<A>(row: ApprovalRowBase<A>, decisions: DecisionRow[], list: (a: A) => string[]): ApprovalRequest {
  return {
    id: row.id,
    kind: row.kind as ApprovalRequest['kind'],
    connection: row.connection,
    requester: { subject: row.requester_subject, email: row.requester_email, groups: list(row.requester_groups) },
    statement: row.statement,
    fingerprint: row.fingerprint,
    parameters: JSON.parse(row.parameters) as unknown[],
    reason: row.reason,
    rule: row.rule,
    estimate: row.estimate === null ? null : Number(row.estimate),
    duration_ms: row.duration_ms === null ? null : Number(row.duration_ms),
    session_id: row.session_id,
    status: row.status as RequestStatus,
    created_at: iso(row.created_at),
    expires_at: iso(row.expires_at),
    approvals: decisions
      .filter((d) => d.request_id === row.id)
      .map((d) => ({ approver: d.approver, decision: d.decision as 'approve' | 'deny', comment: d.comment, at: iso(d.at) })),
    min_approvals: row.min_approvals,
    approvers: list(row.approvers),
  };
}
