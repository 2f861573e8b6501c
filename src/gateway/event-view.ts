/**
 * What the HTTP API serves of a recorded event, per reader. The record itself is never changed:
 * the hash chain keeps everything for auditors. Operator-only data — today `session.end`'s
 * `detail`, the upstream address, service account and the server's own words when the gateway
 * could not reach or log in to the database — is served to admins and auditors only
 * (authz.ts `mayReadOperatorDetail`). Anyone else (the session's own user) gets the event without
 * it and a `redacted` list naming what was removed; such an event no longer matches its `hash`,
 * which covers the record as stored.
 */
import type { AuditEvent, AuditEventType } from '../audit/event.js';

/** An event as the API serves it: `redacted` lists the `data` fields withheld from this reader. */
export type ServedEvent = AuditEvent & { redacted?: string[] };

/** Per event type, the `data` fields only admins and auditors are shown. */
export const OPERATOR_ONLY: Readonly<Partial<Record<AuditEventType, readonly string[]>>> = {
  'session.end': ['detail'],
};

/**
 * Shown instead of a `session.end` error recorded before `error` and `detail` were separated,
 * when that error held the operator's account of an upstream failure.
 */
export const UPSTREAM_FAILED_MESSAGE = "the gateway could not connect or log in to the database behind this connection; an administrator can find the cause in the gateway's log";

/** The event as a reader without operator access may see it. */
export function userViewOf(event: AuditEvent): ServedEvent {
  const withheld = OPERATOR_ONLY[event.type] ?? [];
  const data: Record<string, unknown> = { ...event.data };
  const redacted: string[] = [];
  for (const key of withheld) {
    if (!(key in data)) continue;
    delete data[key];
    redacted.push(`data.${key}`);
  }
  if (event.type === 'session.end' && isLegacyUpstreamFailure(event.data)) {
    data['error'] = UPSTREAM_FAILED_MESSAGE;
    redacted.push('data.error');
  }
  return redacted.length === 0 ? event : { ...event, data, redacted };
}

/** Events for `reader`: as recorded for admins and auditors, else each through userViewOf. */
export function eventsFor(events: AuditEvent[], operator: boolean): ServedEvent[] {
  return operator ? events : events.map(userViewOf);
}

/** An upstream failure recorded with the operator's account in `error` and no `detail` field. */
function isLegacyUpstreamFailure(data: Record<string, unknown>): boolean {
  const failed = data['reason'] === 'upstream-failed' || data['engine_reason'] === 'upstream-failed';
  return failed && !('detail' in data) && typeof data['error'] === 'string';
}
