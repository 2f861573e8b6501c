/** Validation of the filters callers pass to a Store, shared by both backends. */
import { EVENT_TYPE_PATTERN } from '../api/types.js';
import { UsageError } from '../errors.js';
import type { EventFilter, SessionFilter } from './store.js';

/** An RFC 3339 (or any Date-parsable) instant as the stores keep it: UTC ISO with milliseconds. */
export function normalizeInstant(name: string, value: string | undefined): string | null {
  if (value === undefined) return null;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new UsageError(`${name} is not a valid time: ${JSON.stringify(value)}`, { hint: 'use RFC 3339, e.g. 2026-01-31T09:00:00Z' });
  return new Date(ms).toISOString();
}

export function normalizeLimit(value: number | undefined): number | null {
  if (value === undefined) return null;
  if (!Number.isSafeInteger(value) || value < 0) throw new UsageError(`limit must be a non-negative integer, got ${value}`);
  return value;
}

export interface NormalizedEventFilter {
  afterSeq: number;
  /** null: no upper bound. */
  beforeSeq: number | null;
  since: string | null;
  until: string | null;
  limit: number | null;
  /** Exact types; null: no type filter (with `typePrefixes` also null). */
  types: string[] | null;
  /** From `auth.*`: `auth.`. Safe inside a LIKE pattern (no `%`, `_` escaped by the caller). */
  typePrefixes: string[] | null;
  newestFirst: boolean;
  payload: boolean;
}

const MAX_TYPES = 50;

export function normalizeEventFilter(f: EventFilter): NormalizedEventFilter {
  const afterSeq = f.afterSeq ?? 0;
  if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) throw new UsageError(`afterSeq must be a non-negative integer, got ${afterSeq}`);
  const beforeSeq = f.beforeSeq ?? null;
  if (beforeSeq !== null && (!Number.isSafeInteger(beforeSeq) || beforeSeq < 1)) throw new UsageError(`beforeSeq must be a positive integer, got ${beforeSeq}`);
  let types: string[] | null = null;
  let typePrefixes: string[] | null = null;
  if (f.types !== undefined) {
    if (f.types.length === 0 || f.types.length > MAX_TYPES) throw new UsageError(`types: expected 1 to ${MAX_TYPES} event types`);
    for (const t of f.types) {
      if (typeof t !== 'string' || t.length > 64 || !EVENT_TYPE_PATTERN.test(t)) {
        throw new UsageError(`not an event type: ${JSON.stringify(String(t).slice(0, 40))}`, { hint: 'e.g. access.denied, auth.failed or auth.*' });
      }
    }
    types = [...new Set(f.types.filter((t) => !t.endsWith('.*')))];
    typePrefixes = [...new Set(f.types.filter((t) => t.endsWith('.*')).map((t) => t.slice(0, -1)))];
  }
  return {
    afterSeq, beforeSeq, since: normalizeInstant('since', f.since), until: normalizeInstant('until', f.until), limit: normalizeLimit(f.limit),
    types, typePrefixes, newestFirst: f.newestFirst === true, payload: f.payload !== false,
  };
}

/** A LIKE pattern for a type prefix (`auth.`): `_` is a LIKE wildcard and must be escaped. */
export function typePrefixPattern(prefix: string): string {
  return `${prefix.replace(/_/g, '\\_')}%`;
}

export interface NormalizedSessionFilter {
  subject: string | null;
  /** Matched against the subject, the email (lowercased) and `apikey:<user>`. */
  user: string | null;
  connection: string | null;
  since: string | null;
  until: string | null;
  /** Safe inside a LIKE pattern: only hex digits and dashes. */
  idPrefix: string | null;
  limit: number | null;
}

/** A session id prefix: what a UUID may start with. */
export const SESSION_ID_PREFIX = /^[0-9a-f][0-9a-f-]{0,35}$/;

export function normalizeSessionFilter(f: SessionFilter): NormalizedSessionFilter {
  return {
    subject: f.subject ?? null,
    user: f.user ?? null,
    connection: f.connection ?? null,
    since: normalizeInstant('since', f.since),
    until: normalizeInstant('until', f.until),
    idPrefix: normalizeIdPrefix(f.idPrefix),
    limit: normalizeLimit(f.limit),
  };
}

function normalizeIdPrefix(value: string | undefined): string | null {
  if (value === undefined) return null;
  if (!SESSION_ID_PREFIX.test(value)) throw new UsageError(`not the start of a session id: ${JSON.stringify(value.slice(0, 40))}`);
  return value;
}
