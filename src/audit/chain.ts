/**
 * The audit hash chain.
 *
 *   hash(n) = SHA-256 hex of UTF-8( prev_hash(n) || canonicalJson(event n without `hash`) )
 *   prev_hash(n) = hash(n-1),  prev_hash(1) = GENESIS_HASH
 *
 * The hashed object includes `seq` and `prev_hash`, so changing, reordering or removing any
 * event breaks every later link. Canonical JSON is JSON with object keys sorted by UTF-16 code
 * units and no whitespace — the RFC 8785 (JCS) form for the values hoop records — so that a
 * verifier in another language can recompute a hash from an exported event.
 */
import { createHash } from 'node:crypto';
import type { AuditEvent, UnsealedEvent } from './event.js';

export const GENESIS_HASH = '0'.repeat(64);

const HASH_RE = /^[0-9a-f]{64}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** RFC 3339, UTC, milliseconds: the one shape stores can keep and compare exactly. */
const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * Deterministic JSON. Normalises as JSON.stringify does (`toJSON` is honoured, object members
 * that are `undefined` are omitted, `undefined` array items become null, -0 becomes 0), and
 * rejects with a TypeError naming the path whatever JSON would silently change or lose:
 * NaN/Infinity, bigint, functions, symbols, cycles, and non-plain objects (Map, Set, typed
 * arrays, class instances) without `toJSON`. A top-level `undefined` is rejected too.
 */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  write(value, '$', out, new Set());
  return out.join('');
}

function write(value: unknown, path: string, out: string[], ancestors: Set<object>): void {
  const v = toJsonValue(value, path);
  switch (typeof v) {
    case 'string':
      out.push(JSON.stringify(v));
      return;
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`canonical JSON: ${path} is ${v}, which JSON cannot represent`);
      out.push(JSON.stringify(v));
      return;
    case 'boolean':
      out.push(v ? 'true' : 'false');
      return;
    case 'undefined':
      throw new TypeError(`canonical JSON: ${path} is undefined`);
    case 'object':
      if (v === null) {
        out.push('null');
        return;
      }
      if (ancestors.has(v)) throw new TypeError(`canonical JSON: ${path} is a cycle`);
      ancestors.add(v);
      if (Array.isArray(v)) writeArray(v, path, out, ancestors);
      else writeObject(v as Record<string, unknown>, path, out, ancestors);
      ancestors.delete(v);
      return;
    default:
      throw new TypeError(`canonical JSON: ${path} is a ${typeof v}, which JSON cannot represent`);
  }
}

function toJsonValue(value: unknown, path: string): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return toJSON.call(value, path);
  if (Array.isArray(value)) return value;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError(`canonical JSON: ${path} is a ${value.constructor?.name ?? 'non-plain object'}, not a plain object`);
  }
  return value;
}

function writeArray(items: unknown[], path: string, out: string[], ancestors: Set<object>): void {
  out.push('[');
  for (let i = 0; i < items.length; i++) {
    if (i > 0) out.push(',');
    const item = items[i];
    if (item === undefined) out.push('null');
    else write(item, `${path}[${i}]`, out, ancestors);
  }
  out.push(']');
}

function writeObject(obj: Record<string, unknown>, path: string, out: string[], ancestors: Set<object>): void {
  out.push('{');
  let first = true;
  for (const key of Object.keys(obj).sort()) {
    const member = obj[key];
    if (member === undefined) continue;
    if (!first) out.push(',');
    first = false;
    out.push(JSON.stringify(key), ':');
    write(member, `${path}.${key}`, out, ancestors);
  }
  out.push('}');
}

/**
 * The fields the hash covers. Listed, not "everything but hash", so that an exporter may add
 * presentation fields to a line without breaking verification; a new model field must be added
 * here (and is then a chain format change).
 */
function hashedBody(e: Omit<AuditEvent, 'hash'>): Omit<AuditEvent, 'hash'> {
  return {
    seq: e.seq,
    id: e.id,
    time: e.time,
    type: e.type,
    actor: e.actor,
    source: e.source,
    connection: e.connection,
    session_id: e.session_id,
    data: e.data,
    prev_hash: e.prev_hash,
  };
}

export function computeHash(e: Omit<AuditEvent, 'hash'>): string {
  return createHash('sha256')
    .update(e.prev_hash + canonicalJson(hashedBody(e)), 'utf8')
    .digest('hex');
}

/** Places an event in the chain after `prevHash` at position `seq`. Throws TypeError on a malformed event. */
export function sealEvent(e: UnsealedEvent, seq: number, prevHash: string): AuditEvent {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new TypeError(`sealEvent: seq must be a positive integer, got ${seq}`);
  if (!HASH_RE.test(prevHash)) throw new TypeError('sealEvent: prevHash must be 64 lowercase hex digits');
  if (!UUID_RE.test(e.id)) throw new TypeError(`sealEvent: id must be a lowercase UUID, got ${JSON.stringify(e.id)}`);
  if (!TIME_RE.test(e.time)) throw new TypeError(`sealEvent: time must be RFC 3339 UTC with milliseconds, got ${JSON.stringify(e.time)}`);
  if (typeof e.type !== 'string' || e.type.length === 0) throw new TypeError('sealEvent: type must be a non-empty string');
  const body: Omit<AuditEvent, 'hash'> = {
    seq,
    id: e.id,
    time: e.time,
    type: e.type,
    actor: e.actor ?? null,
    source: e.source ?? null,
    connection: e.connection ?? null,
    session_id: e.session_id ?? null,
    data: e.data,
    prev_hash: prevHash,
  };
  return { ...body, hash: computeHash(body) };
}

export type ChainVerdict = { ok: true } | { ok: false; seq: number; reason: string };

/**
 * Checks that `events` form one unbroken segment of the chain: consecutive `seq`, each
 * `prev_hash` equal to the previous event's `hash` (the first one's equal to `expectedPrev`, or
 * to GENESIS_HASH when the segment starts at seq 1), and each `hash` recomputed from content.
 * Names the first event that fails. Removing events from the END of a log is not detectable here:
 * that is what signed checkpoints of the head are for.
 */
export function verifyChain(events: AuditEvent[], expectedPrev?: string): ChainVerdict {
  let prev: AuditEvent | null = null;
  for (const e of events) {
    const failure = checkLink(e, prev, expectedPrev);
    if (failure) return { ok: false, seq: typeof e.seq === 'number' ? e.seq : NaN, reason: failure };
    prev = e;
  }
  return { ok: true };
}

function checkLink(e: AuditEvent, prev: AuditEvent | null, expectedPrev: string | undefined): string | null {
  if (!Number.isSafeInteger(e.seq) || e.seq < 1) return `seq ${String(e.seq)} is not a positive integer`;
  if (prev && e.seq !== prev.seq + 1) {
    return e.seq <= prev.seq
      ? `seq out of order: ${e.seq} follows ${prev.seq}`
      : `seq gap: expected ${prev.seq + 1}, found ${e.seq} (events missing)`;
  }
  const wantPrev = prev ? prev.hash : (expectedPrev ?? (e.seq === 1 ? GENESIS_HASH : e.prev_hash));
  if (e.prev_hash !== wantPrev) {
    return prev ? `prev link broken: prev_hash does not equal the hash of seq ${prev.seq}` : 'prev link broken: prev_hash does not equal the expected previous hash';
  }
  let recomputed: string;
  try {
    recomputed = computeHash(e);
  } catch (err) {
    return `event cannot be hashed: ${(err as Error).message}`;
  }
  if (recomputed !== e.hash) return 'hash mismatch: the event content does not match its hash';
  return null;
}
