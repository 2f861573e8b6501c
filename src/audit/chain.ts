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
import { hash } from 'node:crypto';
import type { AuditEvent, EventPayload, UnsealedEvent } from './event.js';

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
  return canonicalJsonAt(value, '$');
}

/** canonicalJson of a value found at `root` (the path errors name, e.g. `$.data`). A string (most
 *  of an event's fields) needs no walk. */
function canonicalJsonAt(value: unknown, root: string): string {
  return typeof value === 'string' ? JSON.stringify(value) : write(value, { root, keys: [], ancestors: [] });
}

/**
 * Where the walk is: the keys from the root down to the current value, and the objects it is
 * inside (a short array: events are shallow, and `includes` on a few items costs less than a
 * Set's add and delete per object). The path is spelled out only when something needs it (an
 * error, a toJSON), not built for every member.
 */
interface Walk {
  root: string;
  keys: (string | number)[];
  ancestors: object[];
}

function pathOf(walk: Walk): string {
  let path = walk.root;
  for (const key of walk.keys) path += typeof key === 'number' ? `[${key}]` : `.${key}`;
  return path;
}

function write(value: unknown, walk: Walk): string {
  const v = toJsonValue(value, walk);
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`canonical JSON: ${pathOf(walk)} is ${v}, which JSON cannot represent`);
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      throw new TypeError(`canonical JSON: ${pathOf(walk)} is undefined`);
    case 'object': {
      if (v === null) return 'null';
      if (walk.ancestors.includes(v)) throw new TypeError(`canonical JSON: ${pathOf(walk)} is a cycle`);
      walk.ancestors.push(v);
      const text = Array.isArray(v) ? writeArray(v, walk) : writeObject(v as Record<string, unknown>, walk);
      walk.ancestors.pop();
      return text;
    }
    default:
      throw new TypeError(`canonical JSON: ${pathOf(walk)} is a ${typeof v}, which JSON cannot represent`);
  }
}

function toJsonValue(value: unknown, walk: Walk): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return toJSON.call(value, pathOf(walk));
  if (Array.isArray(value)) return value;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError(`canonical JSON: ${pathOf(walk)} is a ${value.constructor?.name ?? 'non-plain object'}, not a plain object`);
  }
  return value;
}

function writeArray(items: unknown[], walk: Walk): string {
  let text = '[';
  for (let i = 0; i < items.length; i++) {
    if (i > 0) text += ',';
    const item = items[i];
    if (item === undefined) {
      text += 'null';
    } else {
      walk.keys.push(i);
      text += write(item, walk);
      walk.keys.pop();
    }
  }
  return text + ']';
}

function writeObject(obj: Record<string, unknown>, walk: Walk): string {
  const keys = Object.keys(obj);
  sortKeys(keys);
  let text = '{';
  for (const key of keys) {
    const member = obj[key];
    if (member === undefined) continue;
    if (text.length > 1) text += ',';
    walk.keys.push(key);
    text += memberKey(key) + write(member, walk);
    walk.keys.pop();
  }
  return text + '}';
}

/** Sorts by UTF-16 code units, as Array.prototype.sort's default order does: by insertion for an
 *  event's handful of keys (quicker there), by that sort for more. */
function sortKeys(keys: string[]): void {
  if (keys.length > 16) {
    keys.sort();
    return;
  }
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i]!;
    let j = i - 1;
    for (; j >= 0 && keys[j]! > key; j--) keys[j + 1] = keys[j]!;
    keys[j + 1] = key;
  }
}

/** `"key":` for a member name: the few names events use, encoded once (bounded: names are data too). */
const memberKeys = new Map<string, string>();

function memberKey(key: string): string {
  let text = memberKeys.get(key);
  if (text === undefined) {
    text = `${JSON.stringify(key)}:`;
    if (memberKeys.size < 4096 && key.length <= 64) memberKeys.set(key, text);
  }
  return text;
}

/**
 * The fields the hash covers. Listed, not "everything but hash", so that an exporter may add
 * presentation fields to a line without breaking verification; a new model field must be added
 * here and to UNSEALED_FIELDS, which sealing hashes (and is then a chain format change).
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
    payload_sha256: e.payload_sha256, // absent (so omitted) for events without a payload
    prev_hash: e.prev_hash,
  };
}

/**
 * SHA-256 hex of a string's UTF-8 bytes. crypto.hash (Node >= 20.12) is the one-shot form of
 * createHash().update().digest(): the same digest without building a Hash object per event.
 */
function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}

/** SHA-256 hex of a payload's canonical JSON text: what `payload_sha256` holds. */
export function payloadSha256(payloadJson: string): string {
  return sha256Hex(payloadJson);
}

/** Whether a present payload matches the event's `payload_sha256`; null when there is nothing to check (none, or pruned). */
export function checkPayload(e: Pick<AuditEvent, 'payload_sha256' | 'payload'>): string | null {
  if (e.payload === undefined || e.payload === null) return null;
  if (e.payload_sha256 === undefined) return 'payload present on an event that has no payload_sha256';
  // As hashMatches: a payload read back from a store already has its keys in canonical order.
  try {
    if (payloadSha256(JSON.stringify(e.payload)) === e.payload_sha256) return null;
  } catch {
    // decided by canonicalJson below
  }
  let text: string;
  try {
    text = canonicalJson(e.payload);
  } catch (err) {
    return `payload cannot be hashed: ${(err as Error).message}`;
  }
  return payloadSha256(text) === e.payload_sha256 ? null : 'payload mismatch: the stored payload does not match its payload_sha256';
}

/**
 * Whether `e.hash` is the hash of `e`, tried first the fast way: an event read back from a store
 * or an export was parsed from canonical JSON, so its objects already hold their keys in
 * canonical order and JSON.stringify (native) gives the canonical text. A digest that matches
 * proves that text is exactly what was hashed; anything else (keys in another order, integer-like
 * keys, which JavaScript orders first) is decided by computeHash.
 */
export function hashMatches(e: AuditEvent): boolean {
  let text: string | undefined;
  try {
    text = JSON.stringify({
      actor: e.actor, connection: e.connection, data: e.data, id: e.id, payload_sha256: e.payload_sha256,
      prev_hash: e.prev_hash, seq: e.seq, session_id: e.session_id, source: e.source, time: e.time, type: e.type,
    });
  } catch {
    text = undefined;
  }
  if (text !== undefined && sha256Hex(e.prev_hash + text) === e.hash) return true;
  return computeHash(e) === e.hash;
}

export function computeHash(e: Omit<AuditEvent, 'hash'>): string {
  return sha256Hex(e.prev_hash + canonicalJson(hashedBody(e)));
}

/** The hashed fields of an event before sealing, in the order the model lists them: hashedBody less seq and prev_hash. */
const UNSEALED_FIELDS = ['id', 'time', 'type', 'actor', 'source', 'connection', 'session_id', 'data', 'payload_sha256'] as const;
type UnsealedField = (typeof UNSEALED_FIELDS)[number];
/** The hashed fields in canonical order (sorted by UTF-16 code units, as writeObject sorts keys), each with its `"key":`. */
const HASHED_MEMBERS = ['seq', ...UNSEALED_FIELDS, 'prev_hash'].sort().map((name) => ({ name, key: `${JSON.stringify(name)}:` }));

/**
 * The canonical JSON text of each field of an unsealed event; `undefined` for a field that is
 * absent (only `data` can be: canonical JSON omits it, as it omits any undefined member).
 */
export type EventJson = Readonly<Record<UnsealedField, string | undefined>>;

/**
 * An unsealed event encoded once: `json` holds the canonical JSON of each field and the fields
 * hold what that JSON reads back as (a snapshot: later changes to the objects it was made from do
 * not reach it). Sealing hashes `json`, and the stores write it as the row's JSON columns, so the
 * hash input and the stored text come from one encoding and nothing walks the objects twice.
 * Make one with `EncodedEvent.of`; treat it as immutable.
 */
export class EncodedEvent implements UnsealedEvent {
  readonly id: string;
  readonly time: string;
  readonly type: UnsealedEvent['type'];
  readonly actor: UnsealedEvent['actor'];
  readonly source: UnsealedEvent['source'];
  readonly connection: string | null;
  readonly session_id: string | null;
  readonly data: UnsealedEvent['data'];
  /** The payload as given (not read back: nothing downstream of sealing mutates it), and its canonical JSON. */
  readonly payload: EventPayload | undefined;
  readonly payloadJson: string | undefined;
  readonly payload_sha256: string | undefined;
  readonly json: EventJson;

  /** `json[f]` is the canonical JSON of `fields[f]`; `fields` hold the read-back snapshots. */
  private constructor(fields: Record<UnsealedField, unknown>, json: EventJson, payload: EventPayload | undefined, payloadJson: string | undefined) {
    this.json = json;
    this.payload = payload;
    this.payloadJson = payloadJson;
    this.payload_sha256 = fields.payload_sha256 as string | undefined;
    this.id = fields.id as string;
    this.time = fields.time as string;
    this.type = fields.type as UnsealedEvent['type'];
    this.actor = fields.actor as UnsealedEvent['actor'];
    this.source = fields.source as UnsealedEvent['source'];
    this.connection = fields.connection as string | null;
    this.session_id = fields.session_id as string | null;
    this.data = fields.data as UnsealedEvent['data'];
  }

  /**
   * Encodes an event's fields as canonical JSON (absent actor, source, connection and session_id
   * become null, as in a sealed event). An EncodedEvent is returned as it is. Throws TypeError,
   * naming the path (`$.data.x`), on a value canonical JSON refuses.
   */
  static of(e: UnsealedEvent): EncodedEvent {
    if (e instanceof EncodedEvent) return e;
    const payloadJson = e.payload === undefined ? undefined : canonicalJsonAt(e.payload, '$.payload');
    const fields: Record<UnsealedField, unknown> = {
      id: e.id,
      time: e.time,
      type: e.type,
      actor: e.actor ?? null,
      source: e.source ?? null,
      connection: e.connection ?? null,
      session_id: e.session_id ?? null,
      data: e.data,
      payload_sha256: payloadJson === undefined ? undefined : payloadSha256(payloadJson),
    };
    const json = {} as Record<UnsealedField, string | undefined>;
    for (const name of UNSEALED_FIELDS) {
      const value = fields[name];
      if (value === undefined) {
        json[name] = undefined;
        continue;
      }
      // A value made by auditConstant (a session's actor and source) is deep-frozen: its text
      // cannot have gone stale, and the object itself is its own immutable snapshot.
      const constant = typeof value === 'object' && value !== null ? constantJson.get(value) : undefined;
      if (constant !== undefined) {
        json[name] = constant;
        continue;
      }
      const text = canonicalJsonAt(value, FIELD_PATHS[name]);
      json[name] = text;
      fields[name] = readBack(value, text);
    }
    return new EncodedEvent(fields, json, e.payload, payloadJson);
  }
}

/** The path errors name for each field (`$.data`), made once. */
const FIELD_PATHS = Object.fromEntries(UNSEALED_FIELDS.map((name) => [name, `$.${name}`])) as Record<UnsealedField, string>;

/** What `text` (the canonical JSON of `value`) reads back as; strings and null are already that. */
function readBack(value: unknown, text: string): unknown {
  return typeof value === 'string' || value === null ? value : JSON.parse(text);
}

/** The canonical JSON of each value auditConstant made, by identity (they are deep-frozen, so it cannot go stale). */
const constantJson = new WeakMap<object, string>();

/**
 * A deep-frozen copy of `value` (what its canonical JSON reads back as) whose encoding
 * EncodedEvent.of then reuses by identity instead of walking and parsing it again: for the values
 * every event of a session carries (its actor and source). Because the copy is frozen to the
 * leaves, nothing can change it after this call, so the cached text stays exactly its canonical
 * JSON, and events may hold the copy itself as their snapshot; `value` stays the caller's, free to
 * change. Throws TypeError as canonicalJson does.
 */
export function auditConstant<T extends object>(value: T): T {
  const text = canonicalJson(value);
  const copy = deepFreeze(JSON.parse(text) as object);
  constantJson.set(copy, text);
  return copy as T;
}

function deepFreeze(value: object): object {
  for (const member of Object.values(value)) if (typeof member === 'object' && member !== null) deepFreeze(member as object);
  return Object.freeze(value);
}

/**
 * The text that is hashed, `prev_hash + canonicalJson(hashedBody)`, joined from the fields'
 * canonical JSON: the same bytes as canonicalJson over the whole body (test/audit/chain.test.ts
 * checks it against computeHash), without walking the objects again.
 */
function hashInput(json: EventJson, seq: number, prevHash: string): string {
  let body = '';
  for (const { name, key } of HASHED_MEMBERS) {
    const text = name === 'seq' ? JSON.stringify(seq) : name === 'prev_hash' ? JSON.stringify(prevHash) : json[name as UnsealedField];
    if (text === undefined) continue; // an absent member, as writeObject skips it
    body += `${body === '' ? '' : ','}${key}${text}`;
  }
  return `${prevHash}{${body}}`;
}

/** Places an event in the chain after `prevHash` at position `seq`. Throws TypeError on a malformed event. */
export function sealEvent(event: UnsealedEvent, seq: number, prevHash: string): AuditEvent {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new TypeError(`sealEvent: seq must be a positive integer, got ${seq}`);
  if (!HASH_RE.test(prevHash)) throw new TypeError('sealEvent: prevHash must be 64 lowercase hex digits');
  const e = EncodedEvent.of(event);
  if (!UUID_RE.test(e.id)) throw new TypeError(`sealEvent: id must be a lowercase UUID, got ${JSON.stringify(e.id)}`);
  if (!TIME_RE.test(e.time)) throw new TypeError(`sealEvent: time must be RFC 3339 UTC with milliseconds, got ${JSON.stringify(e.time)}`);
  if (typeof e.type !== 'string' || e.type.length === 0) throw new TypeError('sealEvent: type must be a non-empty string');
  // The members of hashedBody, in its order, read from `e` directly (no intermediate copies).
  const sealed: AuditEvent = {
    seq,
    id: e.id,
    time: e.time,
    type: e.type,
    actor: e.actor,
    source: e.source,
    connection: e.connection,
    session_id: e.session_id,
    data: e.data,
    ...(e.payload_sha256 !== undefined ? { payload_sha256: e.payload_sha256 } : {}),
    prev_hash: prevHash,
    hash: sha256Hex(hashInput(e.json, seq, prevHash)),
  };
  if (sealed.payload_sha256 !== undefined) sealed.payload = e.payload!;
  return sealed;
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
  let matches: boolean;
  try {
    matches = hashMatches(e);
  } catch (err) {
    return `event cannot be hashed: ${(err as Error).message}`;
  }
  if (!matches) return 'hash mismatch: the event content does not match its hash';
  return checkPayload(e);
}
