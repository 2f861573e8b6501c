/**
 * How one result column's values are replaced, decided once per column and applied per value.
 *
 * Masks keep the column's wire type, so RowDescription is never rewritten:
 * - text-like types (text, varchar, bpchar, name, unknown), text or binary format (the same bytes):
 *   `redact` -> "****"; `partial` -> the last `keep` characters stay, every other ASCII letter or
 *   digit becomes '*', separators stay ("123-45-6789" -> "***-**-6789"); `hash` -> a keyed token
 *   of the value's shape (digit -> digit, lower -> lower, upper -> upper, separators kept, same
 *   length, so it fits char(n)/varchar(n) and a dump of it restores).
 *   A value with a byte >= 0x80 gets "****" for partial and hash: its characters cannot be
 *   re-encoded safely in every client encoding.
 * - int2/int4/int8 with `hash`: a keyed value in the type's non-negative range.
 * - anything else (other types, the `null` method, result type unknown): SQL NULL.
 * - a derived value (an expression over protected data): partial and hash become redact, because
 *   `partial` of `reverse(ssn)` would show the leading digits, and a hash of `substr(ssn, 1, 3)`
 *   is a dictionary of three digits.
 *
 * The hash token is HMAC-SHA256(key, value bytes) stretched in counter mode
 * (block j >= 1 = HMAC(key, block0 || uint32be(j))), two bytes per output character. It depends on
 * the value and the key only, so one value gives one token in every column and every session
 * (joins and GROUP BY line up), and a different key gives unrelated tokens. bpchar values arrive
 * padded with spaces: the padding is left out of the MAC (so char(11) and text holding the same
 * SSN agree) and kept as spaces in the output (so char(n) stays n characters).
 * Integers are MACed as their canonical decimal text, so text and binary formats agree.
 *
 * Returned buffers may be shared (the redact mask is one constant): callers must not mutate them.
 */
import { HmacSha256 } from './hmac.js';
import type { MaskMethod, MaskRule } from './types.js';

export interface ColumnMasker {
  /** The method actually applied. */
  method: MaskMethod;
  /** Why `method` differs from the rule's (or, without a rule, from redact), e.g.
   *  "null: smallint cannot hold a text mask"; null when it does not. */
  note: string | null;
  /** The bytes to send instead of `value` (null: SQL NULL). Do not mutate the result. */
  mask(value: Buffer, format: number): Buffer | null;
}

const TYPE = { name: 19, int8: 20, int2: 21, int4: 23, text: 25, unknown: 705, bpchar: 1042, varchar: 1043 } as const;
const TEXT_LIKE = new Set<number>([TYPE.text, TYPE.varchar, TYPE.bpchar, TYPE.name, TYPE.unknown]);
const INTEGER_WIDTH = new Map<number, 2 | 4 | 8>([[TYPE.int2, 2], [TYPE.int4, 4], [TYPE.int8, 8]]);
const TYPE_NAMES = new Map<number, string>([
  [16, 'boolean'], [17, 'bytea'], [18, '"char"'], [20, 'bigint'], [21, 'smallint'], [23, 'integer'], [26, 'oid'],
  [114, 'json'], [700, 'real'], [701, 'double precision'], [790, 'money'], [1082, 'date'], [1083, 'time'],
  [1114, 'timestamp'], [1184, 'timestamptz'], [1186, 'interval'], [1700, 'numeric'], [2950, 'uuid'], [3802, 'jsonb'],
]);
const DEFAULT_KEEP = 4;

const ASTERISK = 0x2a;
const SPACE = 0x20;
/** The one redact mask, shared by every column and value. */
const REDACTED = Buffer.from('****', 'latin1');

export function isTextLike(typeOid: number): boolean {
  return TEXT_LIKE.has(typeOid);
}

export function columnMasker(rule: MaskRule | null, typeOid: number, derived: boolean, key: Buffer): ColumnMasker {
  const notes: string[] = [];
  let method: MaskMethod = rule?.method ?? 'redact';
  if (derived && (method === 'partial' || method === 'hash')) {
    notes.push(`redact: ${method} applies to a column's own value, not to an expression over it`);
    method = 'redact';
  }
  if (method === 'null') return finish('null', notes, () => null);

  if (isTextLike(typeOid)) {
    const padded = typeOid === TYPE.bpchar;
    if (method === 'partial') return finish(method, notes, partialMask(keepOf(rule), padded));
    if (method === 'hash') return finish(method, notes, textHashMask(hmacFor(key), padded));
    return finish(method, notes, () => REDACTED);
  }
  const width = INTEGER_WIDTH.get(typeOid);
  if (method === 'hash' && width !== undefined) return finish(method, notes, integerHashMask(hmacFor(key), width));

  const type = typeOid === 0 ? 'a result of unknown type' : (TYPE_NAMES.get(typeOid) ?? `type ${typeOid}`);
  notes.push(`null: ${type} cannot hold a ${method === 'hash' ? 'hash token' : 'text mask'}`);
  return finish('null', notes, () => null);
}

function finish(method: MaskMethod, notes: string[], mask: (value: Buffer, format: number) => Buffer | null): ColumnMasker {
  return { method, note: notes.length === 0 ? null : notes.join('; '), mask };
}

/** A keep that is not a non-negative integer keeps nothing (config validation should have refused it). */
function keepOf(rule: MaskRule | null): number {
  const keep = rule?.keep ?? DEFAULT_KEEP;
  return Number.isInteger(keep) && keep >= 0 ? keep : 0;
}

function partialMask(keep: number, padded: boolean): (value: Buffer) => Buffer {
  return (value) => {
    if (hasNonAscii(value)) return REDACTED;
    const end = padded ? unpaddedLength(value) : value.length;
    // A value no longer than `keep` is masked whole: keeping it all would show it all.
    const keepFrom = end > keep ? end - keep : end;
    const out = Buffer.allocUnsafe(value.length);
    for (let i = 0; i < value.length; i++) {
      const byte = value[i]!;
      out[i] = i < keepFrom && isAlphanumeric(byte) ? ASTERISK : byte;
    }
    return out;
  };
}

function textHashMask(hmac: HmacSha256, padded: boolean): (value: Buffer) => Buffer {
  const stream = new TokenStream(hmac);
  return (value) => {
    if (hasNonAscii(value)) return REDACTED;
    const end = padded ? unpaddedLength(value) : value.length;
    stream.start(value, end);
    const out = Buffer.allocUnsafe(value.length);
    for (let i = 0; i < value.length; i++) {
      const byte = value[i]!;
      if (i >= end) out[i] = byte;
      else if (byte >= 0x30 && byte <= 0x39) out[i] = 0x30 + (stream.next() % 10);
      else if (byte >= 0x61 && byte <= 0x7a) out[i] = 0x61 + (stream.next() % 26);
      else if (byte >= 0x41 && byte <= 0x5a) out[i] = 0x41 + (stream.next() % 26);
      else out[i] = byte;
    }
    return out;
  };
}

/** 16-bit draws from HMAC(key, value), stretched in counter mode for values of more than 16 letters and digits. */
class TokenStream {
  private readonly seed = new Uint8Array(36);
  private readonly block = new Uint8Array(32);
  private position = 0;
  private counter = 0;

  constructor(private readonly hmac: HmacSha256) {}

  start(value: Buffer, end: number): void {
    this.seed.set(this.hmac.digest(value, 0, end));
    for (let i = 0; i < 32; i++) this.block[i] = this.seed[i]!;
    this.position = 0;
    this.counter = 0;
  }

  next(): number {
    if (this.position === 32) {
      this.counter++;
      const seed = this.seed;
      seed[32] = this.counter >>> 24;
      seed[33] = this.counter >>> 16;
      seed[34] = this.counter >>> 8;
      seed[35] = this.counter;
      this.block.set(this.hmac.digest(seed));
      this.position = 0;
    }
    const draw = (this.block[this.position]! << 8) | this.block[this.position + 1]!;
    this.position += 2;
    return draw;
  }
}

function integerHashMask(hmac: HmacSha256, width: 2 | 4 | 8): (value: Buffer, format: number) => Buffer {
  const decimal = new Uint8Array(20); // "-9223372036854775808" is 20 characters
  return (value, format) => {
    let mac: Uint8Array;
    if (format === 1 && value.length === width) {
      const start = writeCanonicalDecimal(value, width, decimal);
      mac = hmac.digest(decimal, start, decimal.length);
    } else {
      // Text format: PostgreSQL's integer output is already canonical. (A binary value of the
      // wrong width cannot come from the server; it still gets a valid, keyed value.)
      mac = hmac.digest(value);
    }
    const high = ((mac[0]! << 24) | (mac[1]! << 16) | (mac[2]! << 8) | mac[3]!) & 0x7fffffff;
    const low = ((mac[4]! << 24) | (mac[5]! << 16) | (mac[6]! << 8) | mac[7]!) >>> 0;
    const hashed = width === 8 ? null : width === 4 ? high : high >>> 16;
    if (format === 1) {
      const out = Buffer.allocUnsafe(width);
      if (hashed === null) { out.writeUInt32BE(high, 0); out.writeUInt32BE(low, 4); }
      else if (width === 4) out.writeUInt32BE(hashed, 0);
      else out.writeUInt16BE(hashed, 0);
      return out;
    }
    const start = hashed === null ? writeDecimal(high, low, false, decimal) : writeDecimal(0, hashed, false, decimal);
    const out = Buffer.allocUnsafe(decimal.length - start);
    for (let i = start; i < decimal.length; i++) out[i - start] = decimal[i]!;
    return out;
  };
}

/** The decimal text PostgreSQL would print for a big-endian signed integer of `width` bytes, right-aligned in `into`. */
function writeCanonicalDecimal(value: Buffer, width: 2 | 4 | 8, into: Uint8Array): number {
  if (width === 2) { const n = value.readInt16BE(0); return writeDecimal(0, Math.abs(n), n < 0, into); }
  if (width === 4) { const n = value.readInt32BE(0); return writeDecimal(0, Math.abs(n), n < 0, into); }
  let high = value.readUInt32BE(0);
  let low = value.readUInt32BE(4);
  const negative = high >= 0x80000000;
  if (negative) { // two's complement magnitude
    high = ~high >>> 0;
    low = (~low >>> 0) + 1;
    if (low === 0x100000000) { low = 0; high += 1; }
  }
  return writeDecimal(high, low, negative, into);
}

/** Decimal digits of high * 2^32 + low (both unsigned 32-bit), right-aligned in `into`; returns where they start.
 *  Divides by 10 in two 32-bit halves so no step leaves exact double arithmetic. */
function writeDecimal(high: number, low: number, negative: boolean, into: Uint8Array): number {
  let at = into.length;
  do {
    const highRemainder = high % 10;
    high = (high - highRemainder) / 10;
    const rest = highRemainder * 0x100000000 + low;
    const digit = rest % 10;
    low = (rest - digit) / 10;
    into[--at] = 0x30 + digit;
  } while (high !== 0 || low !== 0);
  if (negative) into[--at] = 0x2d;
  return at;
}

const hmacs = new WeakMap<Buffer, HmacSha256>();
/** One precomputed HMAC per key buffer (maskers run synchronously, so they can share its scratch). */
function hmacFor(key: Buffer): HmacSha256 {
  let hmac = hmacs.get(key);
  if (hmac === undefined) hmacs.set(key, (hmac = new HmacSha256(key)));
  return hmac;
}

function hasNonAscii(value: Buffer): boolean {
  for (let i = 0; i < value.length; i++) if (value[i]! >= 0x80) return true;
  return false;
}

function unpaddedLength(value: Buffer): number {
  let end = value.length;
  while (end > 0 && value[end - 1] === SPACE) end--;
  return end;
}

/** An ASCII letter or digit: what masks replace and tokens re-draw; everything else is a separator. */
export function isAlphanumeric(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
}
