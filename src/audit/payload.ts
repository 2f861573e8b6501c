/**
 * Moving the bulky part of an event's data into its payload (src/audit/event.ts EventPayload),
 * and putting it back for readers. A payload maps dotted paths of `data` to the values that were
 * there: `{"result.sets": [...]}` came from `data.result.sets`.
 */
import type { AuditEvent, EventPayload } from './event.js';

/** What query.end keeps apart: the rows the client received, the notices it was sent, the COPY data it uploaded. */
export const QUERY_END_PAYLOAD_PATHS = ['result.sets', 'messages.kept', 'upload.copies'] as const;

/**
 * Splits `data`: each path whose value is a non-empty array moves into the payload (an empty one
 * stays, so an event that returned nothing has no payload). Returns copies; `data` is not changed.
 */
export function splitPayload(data: Record<string, unknown>, paths: readonly string[]): { data: Record<string, unknown>; payload?: EventPayload } {
  let rest = data;
  const payload: EventPayload = {};
  let moved = false;
  for (const path of paths) {
    const keys = path.split('.');
    const value = getPath(rest, keys);
    if (!Array.isArray(value) || value.length === 0) continue;
    payload[path] = value;
    rest = withoutPath(rest, keys);
    moved = true;
  }
  return moved ? { data: rest, payload } : { data };
}

/**
 * The event's data as recorded, with its payload put back where it came from. A pruned payload
 * (null) leaves the data as it is, with `payload_pruned: true` so a reader can say why rows are missing.
 */
export function dataWithPayload(e: Pick<AuditEvent, 'data' | 'payload' | 'payload_sha256'>): Record<string, unknown> {
  if (e.payload_sha256 === undefined) return e.data;
  if (e.payload === null) return { ...e.data, payload_pruned: true };
  if (e.payload === undefined) return e.data;
  let data = e.data;
  for (const [path, value] of Object.entries(e.payload)) data = withPath(data, path.split('.'), value);
  return data;
}

function getPath(obj: Record<string, unknown>, keys: string[]): unknown {
  let v: unknown = obj;
  for (const k of keys) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** A copy of `obj` without the member at `keys` (the objects on the way are copied, nothing else). */
function withoutPath(obj: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const [first, ...rest] = keys as [string, ...string[]];
  const copy = { ...obj };
  if (rest.length === 0) delete copy[first];
  else copy[first] = withoutPath(copy[first] as Record<string, unknown>, rest);
  return copy;
}

/** A copy of `obj` with `value` at `keys`, creating the objects on the way if they are missing. */
function withPath(obj: Record<string, unknown>, keys: string[], value: unknown): Record<string, unknown> {
  const [first, ...rest] = keys as [string, ...string[]];
  const copy = { ...obj };
  if (rest.length === 0) copy[first] = value;
  else {
    const inner = copy[first];
    copy[first] = withPath(inner !== null && typeof inner === 'object' && !Array.isArray(inner) ? (inner as Record<string, unknown>) : {}, rest, value);
  }
  return copy;
}
