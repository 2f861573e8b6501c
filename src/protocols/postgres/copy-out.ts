/**
 * COPY ... TO STDOUT data rewritten row by row by a plan's column transforms: the text format
 * (any delimiter and NULL string), CSV (delimiter, quote, escape, NULL string; a HEADER line
 * passes unchanged) and binary. PostgreSQL sends one row per CopyData message in every format
 * (CopyOneRowTo, then CopySendEndOfRow: one pq_putmessage per row), also when a quoted CSV value
 * holds a newline, so each message is parsed on its own.
 *
 * The parsers accept only what PostgreSQL's COPY TO writes ("File Formats" in the COPY
 * reference; copyto.c CopyAttributeOutText / CopyAttributeOutCSV). Anything else, or a row
 * whose field count is not the CopyOutResponse's, returns null: the caller ends the result with
 * an error (masking fails closed). Bytes are read as bytes: delimiter, quote and escape are
 * single ASCII bytes, which in the client encodings this is used with (asciiSafe ones,
 * encodings.ts) never occur inside a multi-byte character.
 */
import type { CopyOptions } from '../engine.js';
import { MessageType } from './messages.js';
import { KEEP, SQL_NULL, ValueSink, copyBytes } from '../value-sink.js';
import { LITTLE_ENDIAN, withoutFirstBytes, wordsOver } from '../../memory-words.js';
import type { Transforms } from './transform.js';

/** How a COPY OUT's rows are laid out, as far as rewriting them needs. */
export type CopyLayout =
  | { format: 'binary' }
  | { format: 'text'; delimiter: number; null: Buffer; header: boolean }
  | { format: 'csv'; delimiter: number; quote: number; escape: number; null: Buffer; header: boolean };

/** COPY's text-format defaults: tab, `\N`, no header. */
export const DEFAULT_TEXT_LAYOUT: CopyLayout = { format: 'text', delimiter: 0x09, null: Buffer.from('\\N', 'latin1'), header: false };

const LF = 0x0a;
const CR = 0x0d;
const BACKSLASH = 0x5c;

/**
 * The layout a plan's COPY options describe, checked against the CopyOutResponse's overall
 * format; a string says why the output cannot be rewritten with certainty.
 */
export function copyLayout(binary: boolean, o: CopyOptions): CopyLayout | string {
  if ((o.format === 'binary') !== binary) return 'the COPY output is not in the format the statement asks for';
  if (o.format === 'binary') return { format: 'binary' };
  const delimiter = singleAscii(o.delimiter);
  const nul = Buffer.from(o.null, 'latin1');
  if (delimiter === null || nul.includes(LF) || nul.includes(CR) || [...o.null].some((c) => c.charCodeAt(0) > 0x7f)) return 'this COPY delimiter or NULL string cannot be read with certainty';
  if (o.format === 'text') {
    if (delimiter === BACKSLASH || delimiter === LF || delimiter === CR) return 'this COPY delimiter cannot be read with certainty';
    return { format: 'text', delimiter, null: nul, header: o.header };
  }
  const quote = singleAscii(o.quote);
  const escape = singleAscii(o.escape);
  if (quote === null || escape === null || quote === delimiter || nul.includes(delimiter) || nul.includes(quote)) return 'this COPY quote, escape or NULL string cannot be read with certainty';
  return { format: 'csv', delimiter, quote, escape, null: nul, header: o.header };
}

function singleAscii(s: string): number | null {
  return s.length === 1 && s.charCodeAt(0) < 0x80 ? s.charCodeAt(0) : null;
}

/**
 * A row's rewritten CopyData message, made once the sink its values went to is settled (hash
 * tokens are filled in then, a chunk of rows at a time: value-sink.ts), since escaping and
 * quoting need the final bytes. Its pieces are ranges, not Buffers: unchanged stretches of the
 * server's row, replaced values in the sink, and a few fixed bytes, copied straight into the
 * output (a Buffer view per piece cost more than the copying).
 */
export class PreparedCopyRow {
  /** Per piece: kind, then two numbers (a source or sink range, or an index into `fixed`). */
  private readonly ops: number[] = [];
  /** Made on first use: most rows have no fixed piece. */
  private fixed: Buffer[] | null = null;

  constructor(private readonly source: Buffer, private readonly layout: CopyLayout) {}

  /** `source[start, end)` as it is. */
  raw(start: number, end: number): void {
    if (end > start) this.ops.push(RAW, start, end);
  }

  bytes(b: Buffer): void {
    this.ops.push(FIXED, this.fix(b), 0);
  }

  /** A replaced value at `sink.bytes[at, at + length)`, escaped or quoted as `kind` says once settled. */
  value(kind: number, at: number, length: number): void {
    this.ops.push(kind, at, length);
  }

  /** The whole message's length; the values' final forms are decided here (call before write). */
  length(sink: ValueSink): number {
    const ops = this.ops;
    let n = 5;
    for (let k = 0; k < ops.length; k += 3) {
      const kind = ops[k]!;
      if (kind === RAW) n += ops[k + 2]! - ops[k + 1]!;
      else if (kind === FIXED) n += this.fixed![ops[k + 1]!]!.length;
      else if (kind === BINARY_VALUE) n += 4 + ops[k + 2]!;
      else {
        const at = ops[k + 1]!;
        const len = ops[k + 2]!;
        const changed = this.rewrite(kind, sink.bytes, at, len);
        if (changed === null) n += len;
        else {
          ops[k] = FIXED; // the value as it must be written, made once
          ops[k + 1] = this.fix(changed);
          n += changed.length;
        }
      }
    }
    return n;
  }

  /** Writes the message (its `length(sink)` bytes) at `into[at, ...)`. */
  write(sink: ValueSink, into: Buffer, at: number, length: number): void {
    into[at] = MessageType.CopyData;
    into.writeInt32BE(length - 1, at + 1);
    let w = at + 5;
    const ops = this.ops;
    for (let k = 0; k < ops.length; k += 3) {
      const kind = ops[k]!;
      const a = ops[k + 1]!;
      const b = ops[k + 2]!;
      if (kind === RAW) w += copyBytes(this.source, a, b, into, w);
      else if (kind === FIXED) w += this.fixed![a]!.copy(into, w);
      else if (kind === BINARY_VALUE) {
        into.writeInt32BE(b, w);
        w += 4 + copyBytes(sink.bytes, a, a + b, into, w + 4);
      } else w += copyBytes(sink.bytes, a, a + b, into, w); // a value that needed no change
    }
  }

  /** The index of `b` among the fixed pieces. */
  private fix(b: Buffer): number {
    return (this.fixed ??= []).push(b) - 1;
  }

  /** The value as COPY writes it, or null when that is its bytes as they are. */
  private rewrite(kind: number, bytes: Buffer, at: number, len: number): Buffer | null {
    const layout = this.layout;
    if (kind === TEXT_VALUE) return layout.format === 'text' && !textIsPlain(bytes, at, len, layout) ? escapeText(bytes.subarray(at, at + len), layout) : null;
    if (layout.format !== 'csv') return null;
    const value = bytes.subarray(at, at + len);
    const quoted = quoteCsv(value, (kind & CSV_WAS_QUOTED) !== 0, (kind & CSV_SINGLE) !== 0, layout);
    return quoted === value ? null : quoted;
  }
}

/** Piece kinds: a range of the source; fixed bytes; a sink value behind its Int32 length (binary); a sink value to escape as text. */
const RAW = 0;
const FIXED = 1;
const BINARY_VALUE = 2;
const TEXT_VALUE = 3;
/** A sink value to quote as CSV: this, with the flags below (it was quoted; the row's only field). */
const CSV_VALUE = 4;
const CSV_WAS_QUOTED = 8;
const CSV_SINGLE = 16;

/**
 * One COPY OUT CopyData body, `buf[start, end)`, parsed and its values transformed into `sink`;
 * null if it cannot be parsed with certainty. Once `sink.settle()` ran (and before the sink is
 * reset), the result's `length` and `write` make the rewritten message. A text row is read where
 * it lies (no view of it per row: this runs per row).
 */
export function prepareCopyData(buf: Buffer, start: number, end: number, columns: number, transforms: Transforms, layout: CopyLayout, sink: ValueSink): PreparedCopyRow | null {
  if (layout.format === 'binary') return transformCopyBinary(buf.subarray(start, end), columns, transforms, sink);
  if (end === start || buf[end - 1] !== LF) return null; // one whole row per message
  if (layout.format === 'text') return transformTextRow(buf, start, end - 1, columns, transforms, layout, sink);
  const body = buf.subarray(start, end);
  return transformCsvRow(body, body.length - 1, columns, transforms, layout, sink);
}

const scratch = new ValueSink();

/** One COPY OUT CopyData body rewritten (the whole message); null if it cannot be parsed with certainty. */
export function transformCopyData(body: Buffer, columns: number, transforms: Transforms, layout: CopyLayout): Buffer | null {
  scratch.reset();
  const prepared = prepareCopyData(body, 0, body.length, columns, transforms, layout, scratch);
  if (prepared === null) return null;
  scratch.settle();
  const length = prepared.length(scratch);
  const message = Buffer.allocUnsafe(length);
  prepared.write(scratch, message, 0, length);
  return message;
}

/** The transform's answer for `buf[start, end)`: KEEP, SQL_NULL, or the length of its replacement,
 *  which then ends at `sink.at` (moved past it). A number, not an object: this runs per value. */
function transformed(t: NonNullable<Transforms[number]>, buf: Buffer, start: number, end: number, format: number, sink: ValueSink): number {
  const n = t(buf, start, end, format, sink);
  if (n >= 0) sink.at += n;
  return n;
}

// ---------------------------------------------------------------------------------------------
// text format

type TextLayout = Extract<CopyLayout, { format: 'text' }>;

/** A text-format row, `body[from, line)` (its LF after). */
function transformTextRow(body: Buffer, from: number, line: number, columns: number, transforms: Transforms, o: TextLayout, sink: ValueSink): PreparedCopyRow | null {
  const bounds = splitText(body, from, line, o.delimiter, columns);
  if (bounds === null) return null;
  const row = new PreparedCopyRow(body, o);
  let run = from; // where the bytes not yet in `row` start: unchanged fields stay as the server wrote them
  for (let i = 0; i < columns; i++) {
    const t = transforms[i] ?? null;
    if (!t) continue;
    const start = bounds[3 * i]!;
    const end = bounds[3 * i + 1]!;
    if (rangeEquals(body, start, end, o.null)) continue; // PostgreSQL compares the NULL string before de-backslashing
    let masked: number;
    if (bounds[3 * i + 2] === 0) masked = transformed(t, body, start, end, 0, sink);
    else {
      const value = unescapeText(body.subarray(start, end));
      if (!value) return null;
      masked = transformed(t, value, 0, value.length, 0, sink);
    }
    if (masked === KEEP) continue;
    row.raw(run, start);
    if (masked === SQL_NULL) row.bytes(o.null);
    else row.value(TEXT_VALUE, sink.at - masked, masked);
    run = end;
  }
  row.raw(run, line + 1); // the rest, and the LF
  return row;
}

let textBounds = new Int32Array(3 * 64);

/**
 * Fields of one text-format row, `line[from, to)`, split at unescaped delimiters (a data delimiter
 * is `\` + it): per field its start, end and whether it holds a backslash, in a scratch array
 * reused by the next call; null unless there are exactly `columns` fields.
 *
 * Every byte of every row is looked at, so the bytes that matter (a delimiter, a backslash, LF,
 * CR) are found a word (four bytes of `line`'s memory, aligned) at a time (specialBytes, with the
 * word tricks of Bit Twiddling Hacks): each such byte is flagged, and so may be a few others (the
 * byte is then looked at and passed over). About half the cost of reading byte by byte. Exported for its tests.
 */
export function splitText(line: Buffer, from: number, to: number, delimiter: number, columns: number): Int32Array | null {
  if (textBounds.length < 3 * columns) textBounds = new Int32Array(6 * columns);
  const bounds = textBounds;
  const base = line.byteOffset;
  // Word k of the memory holds line[4k - base, 4k - base + 4); `last` is the last one with a byte
  // of the row. Without a view over all of those, every byte is looked at.
  const last = (base + to - 1) >> 2;
  let words = wordsOver(line.buffer);
  if (words !== null && last >= words.length) words = null;
  const delimiters = delimiter < 0x0e ? 0 : delimiter * 0x01010101;
  let n = 0;
  let start = from;
  let escaped = 0;
  for (let i = from; i < to; i++) {
    if (words !== null) {
      i = nextFlagged(words, base, i, last, delimiters);
      if (i >= to) break;
    }
    const c = line[i]!;
    if (c === BACKSLASH) {
      if (++i >= to) return null;
      escaped = 1;
    } else if (c === delimiter) {
      if (n === columns) return null;
      bounds[3 * n] = start; bounds[3 * n + 1] = i; bounds[3 * n + 2] = escaped;
      n++;
      start = i + 1;
      escaped = 0;
    } else if (c === LF || c === CR) return null; // COPY TO writes them as \n and \r
  }
  if (n !== columns - 1) return null;
  bounds[3 * n] = start; bounds[3 * n + 1] = to; bounds[3 * n + 2] = escaped;
  return bounds;
}

/** Where in the line (offset `base` in `words`' memory) the first flagged byte at or after `from`
 *  is, up to word `last`: past the line's end if there is none. The first word's bytes before
 *  `from` do not count. */
function nextFlagged(words: Int32Array<ArrayBufferLike>, base: number, from: number, last: number, delimiters: number): number {
  let k = (base + from) >> 2;
  let flags = withoutFirstBytes(specialBytes(words[k]!, delimiters), (base + from) & 3);
  while (flags === 0) {
    if (k === last) return ((last + 1) << 2) - base;
    flags = specialBytes(words[++k]!, delimiters);
  }
  return (k << 2) + firstFlagged(flags) - base;
}

/** Which byte in memory order (0 to 3) is the first one `flags` (nonzero: high bits of bytes) marks. */
function firstFlagged(flags: number): number {
  if (LITTLE_ENDIAN) return flags & 0x80 ? 0 : flags & 0x8000 ? 1 : flags & 0x800000 ? 2 : 3;
  return flags < 0 ? 0 : flags & 0x800000 ? 1 : flags & 0x8000 ? 2 : 3;
}

/**
 * The high bit of each byte of the word x that may be a backslash, LF, CR or the delimiter: the
 * bytes below 0x0e ("hasless", which takes in LF, CR and a control-character delimiter such as
 * the default tab), a backslash, and the delimiter where it is another byte (`delimiters`: it in
 * every byte; 0 for a control character).
 */
function specialBytes(x: number, delimiters: number): number {
  const b = x ^ 0x5c5c5c5c;
  let flags = ((x - 0x0e0e0e0e) & ~x) | ((b - 0x01010101) & ~b);
  if (delimiters !== 0) {
    const d = x ^ delimiters;
    flags |= (d - 0x01010101) & ~d;
  }
  return flags & 0x80808080;
}

function rangeEquals(buf: Buffer, start: number, end: number, other: Buffer): boolean {
  if (end - start !== other.length) return false;
  for (let i = 0; i < other.length; i++) if (buf[start + i] !== other[i]) return false;
  return true;
}

/** Byte tables (0: none), read per byte: a lookup in an object keyed by numbers is many times slower. */
function byteTable(entries: Record<number, number>): Uint8Array {
  const table = new Uint8Array(256);
  for (const [k, v] of Object.entries(entries)) table[Number(k)] = v;
  return table;
}

/** The byte a one-letter text escape stands for (`\n` -> LF); 0: not one. */
const TEXT_ESCAPES = byteTable({ 0x62: 8, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9, 0x76: 11 });

/** COPY text escapes ("File Formats" in the COPY reference). */
function unescapeText(field: Buffer): Buffer | null {
  if (!field.includes(BACKSLASH)) return field;
  const out: number[] = [];
  for (let i = 0; i < field.length; i++) {
    const c = field[i]!;
    if (c !== BACKSLASH) {
      out.push(c);
      continue;
    }
    const e = field[++i];
    if (e === undefined) return null;
    const simple = TEXT_ESCAPES[e]!;
    if (simple !== 0) out.push(simple);
    else if (e >= 0x30 && e <= 0x37) {
      let v = e - 0x30;
      for (let k = 0; k < 2 && (field[i + 1] ?? 0) >= 0x30 && field[i + 1]! <= 0x37; k++) v = v * 8 + (field[++i]! - 0x30);
      out.push(v & 0xff);
    } else if (e === 0x78 && isHex(field[i + 1])) {
      let v = hexValue(field[++i]!);
      if (isHex(field[i + 1])) v = v * 16 + hexValue(field[++i]!);
      out.push(v);
    } else out.push(e);
  }
  return Buffer.from(out);
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
}

function hexValue(c: number): number {
  return c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10;
}

/** The letter a byte is escaped with in text format (LF -> `n`, backslash -> itself); 0: written as it is. */
const TEXT_ESCAPE_OF = byteTable({ 8: 0x62, 12: 0x66, 10: 0x6e, 13: 0x72, 9: 0x74, 11: 0x76, 0x5c: 0x5c });

/** Whether `bytes[at, at + len)` holds a byte text format escapes. */
function hasTextEscape(bytes: Buffer, at: number, len: number, o: TextLayout): boolean {
  for (let i = at; i < at + len; i++) {
    const c = bytes[i]!;
    if (c === o.delimiter || TEXT_ESCAPE_OF[c] !== 0) return true;
  }
  return false;
}

/** Whether `bytes[at, at + len)` is written as it is in text format: nothing to escape, and not the NULL string. */
function textIsPlain(bytes: Buffer, at: number, len: number, o: TextLayout): boolean {
  return !hasTextEscape(bytes, at, len, o) && (len === 0 || !rangeEquals(bytes, at, at + len, o.null));
}

/** A value as COPY TO writes it in text format; one equal to the NULL string gets its first byte as an octal escape. */
function escapeText(value: Buffer, o: TextLayout): Buffer {
  if (!hasTextEscape(value, 0, value.length, o)) return value.length > 0 && value.equals(o.null) ? withOctalFirst(value) : value;
  const out: number[] = [];
  for (const c of value) {
    const e = TEXT_ESCAPE_OF[c]!;
    if (e !== 0) out.push(BACKSLASH, e);
    else if (c === o.delimiter) out.push(BACKSLASH, c);
    else out.push(c);
  }
  const b = Buffer.from(out);
  return b.length > 0 && b.equals(o.null) ? withOctalFirst(b) : b;
}

/** A value equal to the NULL string, its first byte as an octal escape (so it does not read back as NULL). */
function withOctalFirst(b: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`\\${b[0]!.toString(8).padStart(3, '0')}`, 'latin1'), b.subarray(1)]);
}

// ---------------------------------------------------------------------------------------------
// CSV

type CsvLayout = Extract<CopyLayout, { format: 'csv' }>;
interface CsvField { value: Buffer | null; quoted: boolean }

/** A CSV row, `body[0, line)` (its LF after). */
function transformCsvRow(body: Buffer, line: number, columns: number, transforms: Transforms, o: CsvLayout, sink: ValueSink): PreparedCopyRow | null {
  const fields = splitCsv(body.subarray(0, line), o);
  if (!fields || fields.length !== columns) return null;
  const row = new PreparedCopyRow(body, o);
  let run = 0; // where the bytes not yet in `row` start: unchanged fields stay as the server wrote them
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    const t = transforms[i] ?? null;
    if (!t || f.value === null) continue;
    const masked = transformed(t, f.value, 0, f.value.length, 0, sink);
    if (masked === KEEP) continue;
    const start = i === 0 ? 0 : fields[i - 1]!.end + 1; // after the delimiter
    row.raw(run, start);
    if (masked === SQL_NULL) row.bytes(o.null);
    else row.value(CSV_VALUE | (f.quoted ? CSV_WAS_QUOTED : 0) | (fields.length === 1 ? CSV_SINGLE : 0), sink.at - masked, masked);
    run = f.end;
  }
  row.raw(run, line + 1);
  return row;
}

/** Fields of one CSV row, each with where its bytes end (before the next delimiter). */
function splitCsv(line: Buffer, o: CsvLayout): (CsvField & { end: number })[] | null {
  const fields: (CsvField & { end: number })[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === o.quote) {
      const value: number[] = [];
      i++;
      for (;;) {
        if (i >= line.length) return null; // unterminated
        const c = line[i]!;
        if (o.escape !== o.quote && c === o.escape) {
          const next = line[i + 1];
          if (next !== o.quote && next !== o.escape) return null; // COPY TO escapes only these
          value.push(next);
          i += 2;
        } else if (c === o.quote) {
          if (o.escape === o.quote && line[i + 1] === o.quote) {
            value.push(c);
            i += 2;
          } else {
            i++;
            break;
          }
        } else {
          value.push(c);
          i++;
        }
      }
      if (i < line.length && line[i] !== o.delimiter) return null;
      fields.push({ value: Buffer.from(value), quoted: true, end: i });
    } else {
      let end = line.indexOf(o.delimiter, i);
      if (end < 0) end = line.length;
      const raw = line.subarray(i, end);
      if (raw.includes(o.quote) || raw.includes(LF) || raw.includes(CR)) return null;
      fields.push({ value: raw.equals(o.null) ? null : raw, quoted: false, end });
      i = end;
    }
    if (i >= line.length) return fields;
    i++; // the delimiter
    if (i === line.length) {
      fields.push({ value: o.null.length === 0 ? null : Buffer.alloc(0), quoted: false, end: i });
      return fields;
    }
  }
}

/** A value as COPY TO writes it in CSV: quoted when it was, or when reading it back needs it. */
function quoteCsv(value: Buffer, wasQuoted: boolean, single: boolean, o: CsvLayout): Buffer {
  const needs = wasQuoted || value.equals(o.null) || value.includes(o.delimiter) || value.includes(o.quote) || value.includes(LF) || value.includes(CR)
    || (single && value.length === 2 && value[0] === BACKSLASH && value[1] === 0x2e); // a lone \. would end the data
  if (!needs) return value;
  const out: number[] = [o.quote];
  for (const c of value) {
    if (c === o.quote || c === o.escape) out.push(o.escape);
    out.push(c);
  }
  out.push(o.quote);
  return Buffer.from(out);
}

// ---------------------------------------------------------------------------------------------
// binary

const BINARY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/**
 * One binary-COPY message rewritten: the file header (signature, flags, extension), a tuple
 * (Int16 field count, then Int32 length and bytes per field), or the trailer (-1). PostgreSQL
 * sends the header with the first tuple and one tuple per message; anything else is refused.
 */
function transformCopyBinary(body: Buffer, columns: number, transforms: Transforms, sink: ValueSink): PreparedCopyRow | null {
  let at = 0;
  const row = new PreparedCopyRow(body, { format: 'binary' });
  if (body.subarray(0, BINARY_SIGNATURE.length).equals(BINARY_SIGNATURE)) {
    if (body.length < 19) return null;
    const extension = body.readInt32BE(15);
    at = 19 + extension;
    if (extension < 0 || at > body.length) return null;
    if (at === body.length) {
      row.raw(0, at);
      return row;
    }
  }
  if (body.length - at < 2) return null;
  const n = body.readInt16BE(at);
  if (n === -1) {
    if (at + 2 !== body.length) return null;
    row.raw(0, body.length);
    return row;
  }
  if (n !== columns) return null;
  let run = 0; // where in `body` the bytes not yet in `row` start: unchanged fields stay as they came
  at += 2;
  for (let i = 0; i < n; i++) {
    if (body.length - at < 4) return null;
    const fieldStart = at;
    const len = body.readInt32BE(at);
    at += 4;
    if (len < -1 || (len > 0 && at + len > body.length)) return null;
    const valueStart = at;
    if (len > 0) at += len;
    const t = transforms[i] ?? null;
    const out = t && len >= 0 ? transformed(t, body, valueStart, at, 1, sink) : KEEP;
    if (out === KEEP) continue;
    row.raw(run, fieldStart);
    if (out === SQL_NULL) row.bytes(NULL_LENGTH);
    else row.value(BINARY_VALUE, sink.at - out, out);
    run = at;
  }
  row.raw(run, at);
  return at === body.length ? row : null;
}

/** A binary field's length word for SQL NULL (only ever copied from). */
const NULL_LENGTH = Buffer.from([0xff, 0xff, 0xff, 0xff]);

/** Whether a COPY statement's text asks for the default text format (tab, \N) or binary only
 *  (used when the plan gives no COPY options). */
export function copyFormatIsPlain(sql: string): boolean {
  const lower = sql.toLowerCase();
  const options = lower.slice(lower.search(/\bto\s+stdout\b/) + 1);
  return !/\b(csv|delimiter|null|header|quote|escape|force_quote|encoding)\b/.test(options);
}
