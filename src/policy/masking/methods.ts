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
 * Masks run on values where they lie in the message (a range) and write into a ValueSink
 * (value-sink.ts): no Buffer per value. `mask` is the same on a whole value, for callers where
 * that does not matter; its results may be shared (the redact mask is one constant): callers must
 * not mutate them.
 */
import { applyTransform, SQL_NULL, type ValueSink } from '../../protocols/value-sink.js';
import { HmacSha256 } from './hmac.js';
import type { MaskMethod, MaskRule } from './types.js';

export interface ColumnMasker {
  /** The method actually applied. */
  method: MaskMethod;
  /** Why `method` differs from the rule's (or, without a rule, from redact), e.g.
   *  "null: smallint cannot hold a text mask"; null when it does not. */
  note: string | null;
  /** The mask of `row[start, end)` written to the sink, as a ColumnTransform does (engine.ts):
   *  its length, or SQL_NULL. */
  write(row: Buffer, start: number, end: number, format: number, sink: ValueSink): number;
  /** The bytes to send instead of `value` (null: SQL NULL). Do not mutate the result. */
  mask(value: Buffer, format: number): Buffer | null;
}

type Write = ColumnMasker['write'];

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
  if (method === 'null') return finish('null', notes, writeNull);

  if (isTextLike(typeOid)) {
    const padded = typeOid === TYPE.bpchar;
    if (method === 'partial') return finish(method, notes, partialMask(keepOf(rule), padded));
    if (method === 'hash') return finish(method, notes, textHashMask(hmacFor(key), padded));
    return finish(method, notes, writeRedacted);
  }
  const width = INTEGER_WIDTH.get(typeOid);
  if (method === 'hash' && width !== undefined) return finish(method, notes, integerHashMask(hmacFor(key), width));

  const type = typeOid === 0 ? 'a result of unknown type' : (TYPE_NAMES.get(typeOid) ?? `type ${typeOid}`);
  notes.push(`null: ${type} cannot hold a ${method === 'hash' ? 'hash token' : 'text mask'}`);
  return finish('null', notes, writeNull);
}

function finish(method: MaskMethod, notes: string[], write: Write): ColumnMasker {
  const mask = write === writeRedacted ? () => REDACTED : (value: Buffer, format: number) => applyTransform(write, value, format);
  return { method, note: notes.length === 0 ? null : notes.join('; '), write, mask };
}

const writeNull: Write = () => SQL_NULL;

function writeRedacted(_row: Buffer, _start: number, _end: number, _format: number, sink: ValueSink): number {
  const out = sink.reserve(4);
  const at = sink.at;
  out[at] = ASTERISK; out[at + 1] = ASTERISK; out[at + 2] = ASTERISK; out[at + 3] = ASTERISK;
  return 4;
}

/** A keep that is not a non-negative integer keeps nothing (config validation should have refused it). */
function keepOf(rule: MaskRule | null): number {
  const keep = rule?.keep ?? DEFAULT_KEEP;
  return Number.isInteger(keep) && keep >= 0 ? keep : 0;
}

function partialMask(keep: number, padded: boolean): Write {
  return (row, start, end, format, sink) => {
    if (hasNonAscii(row, start, end)) return writeRedacted(row, start, end, format, sink);
    const valueEnd = padded ? unpaddedEnd(row, start, end) : end;
    // A value no longer than `keep` is masked whole: keeping it all would show it all.
    const keepFrom = valueEnd - start > keep ? valueEnd - keep : valueEnd;
    const n = end - start;
    const out = sink.reserve(n);
    let w = sink.at;
    for (let i = start; i < end; i++, w++) {
      const byte = row[i]!;
      out[w] = i < keepFrom && isAlphanumeric(byte) ? ASTERISK : byte;
    }
    return n;
  };
}

function textHashMask(hmac: HmacSha256, padded: boolean): Write {
  const stream = new TokenStream(hmac);
  return (row, start, end, format, sink) => {
    if (hasNonAscii(row, start, end)) return writeRedacted(row, start, end, format, sink);
    const valueEnd = padded ? unpaddedEnd(row, start, end) : end;
    stream.start(row, start, valueEnd);
    const n = end - start;
    const out = sink.reserve(n);
    let w = sink.at;
    for (let i = start; i < end; i++, w++) {
      const byte = row[i]!;
      if (i >= valueEnd) out[w] = byte;
      else if (byte >= 0x30 && byte <= 0x39) out[w] = 0x30 + (stream.next() % 10);
      else if (byte >= 0x61 && byte <= 0x7a) out[w] = 0x61 + (stream.next() % 26);
      else if (byte >= 0x41 && byte <= 0x5a) out[w] = 0x41 + (stream.next() % 26);
      else out[w] = byte;
    }
    return n;
  };
}

/**
 * 16-bit draws from HMAC(key, value), stretched in counter mode for values of more than 16
 * letters and digits. Draw k is bytes 2k and 2k+1 of the current block, big-endian, read from its
 * words as the HMAC leaves them.
 */
class TokenStream {
  private readonly seed = new Uint8Array(36);
  private readonly block = new Int32Array(8);
  private position = 0;
  private counter = 0;

  constructor(private readonly hmac: HmacSha256) {}

  start(value: Uint8Array, start: number, end: number): void {
    this.block.set(this.hmac.digestWords(value, start, end));
    this.position = 0;
    this.counter = 0;
  }

  next(): number {
    if (this.position === 16) {
      const seed = this.seed;
      if (this.counter === 0) { // block 0 is still the current block: it seeds every later one
        for (let i = 0; i < 8; i++) {
          const word = this.block[i]!;
          seed[4 * i] = word >>> 24; seed[4 * i + 1] = word >>> 16; seed[4 * i + 2] = word >>> 8; seed[4 * i + 3] = word;
        }
      }
      this.counter++;
      seed[32] = this.counter >>> 24;
      seed[33] = this.counter >>> 16;
      seed[34] = this.counter >>> 8;
      seed[35] = this.counter;
      this.block.set(this.hmac.digestWords(seed, 0, seed.length));
      this.position = 0;
    }
    const word = this.block[this.position >> 1]!;
    const draw = (this.position & 1) === 0 ? word >>> 16 : word & 0xffff;
    this.position++;
    return draw;
  }
}

function integerHashMask(hmac: HmacSha256, width: 2 | 4 | 8): Write {
  const decimal = new Uint8Array(20); // "-9223372036854775808" is 20 characters
  return (row, start, end, format, sink) => {
    let mac: Int32Array;
    if (format === 1 && end - start === width) {
      const from = writeCanonicalDecimal(row, start, width, decimal);
      mac = hmac.digestWords(decimal, from, decimal.length);
    } else {
      // Text format: PostgreSQL's integer output is already canonical. (A binary value of the
      // wrong width cannot come from the server; it still gets a valid, keyed value.)
      mac = hmac.digestWords(row, start, end);
    }
    const high = mac[0]! & 0x7fffffff;
    const low = mac[1]! >>> 0;
    const hashed = width === 8 ? null : width === 4 ? high : high >>> 16;
    if (format === 1) {
      const out = sink.reserve(width);
      const at = sink.at;
      if (hashed === null) { out.writeUInt32BE(high, at); out.writeUInt32BE(low, at + 4); }
      else if (width === 4) out.writeUInt32BE(hashed, at);
      else out.writeUInt16BE(hashed, at);
      return width;
    }
    const from = hashed === null ? writeDecimal(high, low, false, decimal) : writeDecimal(0, hashed, false, decimal);
    return sink.write(decimal, from, decimal.length);
  };
}

/** The decimal text PostgreSQL would print for a big-endian signed integer of `width` bytes, right-aligned in `into`. */
function writeCanonicalDecimal(value: Buffer, at: number, width: 2 | 4 | 8, into: Uint8Array): number {
  if (width === 2) { const n = value.readInt16BE(at); return writeDecimal(0, Math.abs(n), n < 0, into); }
  if (width === 4) { const n = value.readInt32BE(at); return writeDecimal(0, Math.abs(n), n < 0, into); }
  let high = value.readUInt32BE(at);
  let low = value.readUInt32BE(at + 4);
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

function hasNonAscii(value: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (value[i]! >= 0x80) return true;
  return false;
}

/** Where `value[start, end)` ends without its trailing spaces. */
function unpaddedEnd(value: Buffer, start: number, end: number): number {
  while (end > start && value[end - 1] === SPACE) end--;
  return end;
}

/** An ASCII letter or digit: what masks replace and tokens re-draw; everything else is a separator. */
export function isAlphanumeric(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
}
