/**
 * How one result column's values are replaced, decided once per column and applied per value.
 *
 * Masks keep the column's wire type, so RowDescription is never rewritten:
 * - text-like types (text, varchar, bpchar, name, unknown), text or binary format (the same bytes):
 *   `redact` -> "****"; `partial` -> the last `keep` characters stay, every other ASCII letter or
 *   digit becomes '*', separators stay ("123-45-6789" -> "***-**-6789"); `hash` -> a keyed token
 *   of the value's shape (digit -> digit, lower -> lower, upper -> upper, separators kept, same
 *   length, so it fits char(n)/varchar(n) and a dump of it restores; hash-mask.ts).
 *   A value with a byte >= 0x80 gets "****" for partial and hash: its characters cannot be
 *   re-encoded safely in every client encoding.
 * - int2/int4/int8 with `hash`: a keyed value of the type's full decimal width (hash-mask.ts).
 * - anything else (other types, the `null` method, result type unknown): SQL NULL.
 * - a derived value (an expression over protected data): partial and hash become redact, because
 *   `partial` of `reverse(ssn)` would show the leading digits, and a hash of `substr(ssn, 1, 3)`
 *   is a dictionary of three digits.
 *
 * The hash token comes from a keyed stream of the value (token-mac.ts: AES-256-CMAC under a key
 * derived from masking.hash_key), so one value gives one token in every column and every session
 * (joins and GROUP BY line up), and a different key gives unrelated tokens. Its placeholder is
 * written at once and the token filled in when the sink is settled (value-sink.ts), a chunk of
 * rows at a time.
 *
 * Masks run on values where they lie in the message (a range) and write into a ValueSink
 * (value-sink.ts): no Buffer per value. `mask` is the same on a whole value, for callers where
 * that does not matter; its results may be shared (the redact mask is one constant): callers must
 * not mutate them.
 */
import { applyTransform, SQL_NULL, type ValueSink } from '../../protocols/value-sink.js';
import { integerHashMask, textHashMask } from './hash-mask.js';
import { keptCharacters } from './rules.js';
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
    if (method === 'partial') return finish(method, notes, partialMask(keptCharacters(rule!), padded));
    if (method === 'hash') return finish(method, notes, textHashMask(key, padded, writeRedacted));
    return finish(method, notes, writeRedacted);
  }
  const width = INTEGER_WIDTH.get(typeOid);
  if (method === 'hash' && width !== undefined) return finish(method, notes, integerHashMask(key, width));

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

function partialMask(keep: number, padded: boolean): Write {
  return (row, start, end, format, sink) => {
    const valueEnd = padded ? unpaddedEnd(row, start, end) : end;
    // A value no longer than `keep` is masked whole: keeping it all would show it all.
    const keepFrom = valueEnd - start > keep ? valueEnd - keep : valueEnd;
    const n = end - start;
    const out = sink.reserve(n);
    let w = sink.at;
    for (let i = start; i < end; i++, w++) {
      const byte = row[i]!;
      if (byte >= 0x80) return writeRedacted(row, start, end, format, sink); // overwrites what was written
      out[w] = i < keepFrom && isAlphanumeric(byte) ? ASTERISK : byte;
    }
    return n;
  };
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
