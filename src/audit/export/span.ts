/**
 * What an export covers (docs/audit-export.md; the bundle format: the span of bundle-spec v1).
 *
 * The RANGE is the events with `since <= time < until` and `seq <= bound`, where `bound` is the
 * checkpoint the export asked for as it began (events recorded later are in the next export, so
 * an export is one snapshot however fast the log grows). The FILTERS (user, connection) pick
 * among them.
 *
 * A bundle's SPAN runs from a head a signed checkpoint names to a checkpoint, so that every line
 * of it can be checked without the rest of the log:
 *
 *   first_seq = data.seq of the newest checkpoint before the range's first event (1 if none)
 *   last_seq  = the first checkpoint at or after the range's last event
 *
 * An empty range still has a span: from the head the newest checkpoint before `since` names
 * (genesis if none) to that checkpoint (the first checkpoint, from genesis).
 */
import type { AuditEvent } from '../event.js';
import type { Store } from '../../store/store.js';

export const EXPORT_FORMATS = ['jsonl', 'csv', 'cef', 'ocsf', 'bundle'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportFilters {
  /** A subject, an email (case-insensitive) or an API key name, as `hoop sessions --user` takes it. */
  user: string | null;
  connection: string | null;
}

export interface ExportQuery extends ExportFilters {
  format: ExportFormat;
  /** RFC 3339 UTC with milliseconds; inclusive. */
  since: string;
  /** Exclusive. */
  until: string;
}

export function inRange(e: Pick<AuditEvent, 'time'>, q: Pick<ExportQuery, 'since' | 'until'>): boolean {
  return e.time >= q.since && e.time < q.until;
}

/** Approval and grant events name the requester they are about (`data.requester`, a subject). */
const ABOUT_REQUESTER = /^(approval|grant)\./;

/**
 * Whether an event belongs to the filtered export: its connection is the one asked for, and its
 * actor is the user asked for (subject, email or `apikey:<name>`) — or, for approval and grant
 * events, the request's requester is, so the decisions on a user's requests come with them.
 */
export function matchesFilters(e: AuditEvent, f: ExportFilters): boolean {
  if (f.connection !== null && e.connection !== f.connection) return false;
  if (f.user === null) return true;
  return namesUser(e.actor?.subject, e.actor?.email, f.user) || (ABOUT_REQUESTER.test(e.type) && namesUser(stringAt(e.data, 'requester'), null, f.user));
}

function namesUser(subject: string | null | undefined, email: string | null | undefined, user: string): boolean {
  if (subject === undefined || subject === null) return false;
  if (subject === user || subject === `apikey:${user}`) return true;
  return typeof email === 'string' && email.toLowerCase() === user.toLowerCase();
}

function stringAt(data: Record<string, unknown>, key: string): string | null {
  const v = data[key];
  return typeof v === 'string' ? v : null;
}

export interface Span {
  first_seq: number;
  last_seq: number;
  /** The seq of the checkpoint whose head is first_seq; null from genesis. */
  start_checkpoint: number | null;
}

type Reader = Pick<Store, 'readEvents'>;

/** The data.seq a checkpoint vouches for (0 when malformed: the span then starts at genesis). */
function vouchedSeq(cp: AuditEvent): number {
  const s = cp.data['seq'];
  return typeof s === 'number' && Number.isSafeInteger(s) && s >= 1 && s <= cp.seq ? s : 0;
}

async function one(store: Reader, filter: Parameters<Store['readEvents']>[0]): Promise<AuditEvent | null> {
  return (await store.readEvents({ ...filter, limit: 1, payload: false }))[0] ?? null;
}

/** How far event times may stray from seq order (clocks of replicas): the seq bounds below allow for it. */
const CLOCK_SLACK_MS = 5 * 60_000;

/**
 * Seqs that bracket the range, found through the checkpoints' (type, time) index so that neither
 * an export nor its span scans the log from its start or end by seq: `after` is a checkpoint well
 * before `since` (0 if none), `before` one well after `until` (bound + 1 if none).
 */
export async function rangeSeqs(store: Reader, q: Pick<ExportQuery, 'since' | 'until'>, bound: number): Promise<{ after: number; before: number }> {
  const shift = (t: string, ms: number) => new Date(Date.parse(t) + ms).toISOString();
  const lower = await one(store, { types: ['checkpoint'], until: shift(q.since, -CLOCK_SLACK_MS), beforeSeq: bound + 1, newestFirst: true });
  const upper = await one(store, { types: ['checkpoint'], since: shift(q.until, CLOCK_SLACK_MS), beforeSeq: bound + 1 });
  return { after: lower?.seq ?? 0, before: upper ? upper.seq : bound + 1 };
}

/**
 * The span of a bundle over the range of `q`, reading at most seq `bound` (a checkpoint): the
 * range's first and last events, the checkpoint before, the checkpoint after.
 */
export async function computeSpan(store: Reader, q: Pick<ExportQuery, 'since' | 'until'>, bound: number): Promise<Span> {
  const seqs = await rangeSeqs(store, q, bound);
  const range = { since: q.since, until: q.until, afterSeq: seqs.after, beforeSeq: seqs.before };
  const first = await one(store, range);
  const last = first && (await one(store, { ...range, newestFirst: true }));
  let start: AuditEvent | null;
  let end: AuditEvent | null;
  if (first && last) {
    start = first.seq > 1 ? await one(store, { types: ['checkpoint'], beforeSeq: first.seq, newestFirst: true }) : null;
    end = await one(store, { types: ['checkpoint'], afterSeq: last.seq - 1, beforeSeq: bound + 1 });
  } else {
    // Nothing in the range: anchor to anchor around where it would be.
    start = await one(store, { types: ['checkpoint'], until: q.since, beforeSeq: bound + 1, newestFirst: true });
    end = start ?? (await one(store, { types: ['checkpoint'], beforeSeq: bound + 1 }));
  }
  if (!end) throw new Error(`no checkpoint at or before seq ${bound} to end the span at`);
  const firstSeq = start ? vouchedSeq(start) || 1 : 1;
  return { first_seq: Math.min(firstSeq, end.seq), last_seq: end.seq, start_checkpoint: start && vouchedSeq(start) ? start.seq : null };
}
