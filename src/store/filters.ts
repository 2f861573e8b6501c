/** Validation of the filters callers pass to a Store, shared by both backends. */
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
  since: string | null;
  until: string | null;
  limit: number | null;
}

export function normalizeEventFilter(f: EventFilter): NormalizedEventFilter {
  const afterSeq = f.afterSeq ?? 0;
  if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) throw new UsageError(`afterSeq must be a non-negative integer, got ${afterSeq}`);
  return { afterSeq, since: normalizeInstant('since', f.since), until: normalizeInstant('until', f.until), limit: normalizeLimit(f.limit) };
}

export interface NormalizedSessionFilter {
  subject: string | null;
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
