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
import { MessageType, frame } from './messages.js';
import { KEEP, SQL_NULL, ValueSink } from '../value-sink.js';
import type { Transforms } from './transform.js';

/** How a COPY OUT's rows are laid out, as far as rewriting them needs. */
export type CopyLayout =
  | { format: 'binary' }
  | { format: 'text'; delimiter: number; null: Buffer; header: boolean }
  | { format: 'csv'; delimiter: number; quote: number; escape: number; null: Buffer; header: boolean };

/** COPY's text-format defaults: tab, `\N`, no header. */
export const DEFAULT_TEXT_LAYOUT: CopyLayout = { format: 'text', delimiter: 0x09, null: Buffer.from('\\N', 'latin1'), header: false };

const LF = 0x0a;
const NEWLINE = Buffer.from([LF]);
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
 * A row's rewritten message, written once the sink its values went to is settled (hash tokens are
 * filled in then, a chunk of rows at a time: value-sink.ts). Escaping and quoting need the final
 * bytes, so they wait too.
 */
export type PreparedCopyRow = (sink: ValueSink) => Buffer[];

/**
 * One COPY OUT CopyData body parsed and its values transformed into `sink`; null if it cannot be
 * parsed with certainty. Call the result, after `sink.settle()` and before the sink is reset,
 * for the rewritten message's body in pieces (copyDataMessage joins them).
 */
export function prepareCopyData(body: Buffer, columns: number, transforms: Transforms, layout: CopyLayout, sink: ValueSink): PreparedCopyRow | null {
  let parts: Part[] | null;
  if (layout.format === 'binary') parts = transformCopyBinary(body, columns, transforms, sink);
  else if (body.length === 0 || body[body.length - 1] !== LF) return null; // one whole row per message
  else {
    const line = body.subarray(0, body.length - 1);
    parts = layout.format === 'text' ? transformTextRow(line, columns, transforms, layout, sink) : transformCsvRow(line, columns, transforms, layout, sink);
  }
  if (parts === null) return null;
  const ready = parts;
  return (settled) => ready.map((p) => (Buffer.isBuffer(p) ? p : p.then(settled.bytes.subarray(p.at, p.at + p.length))));
}

/** The CopyData message of a body in pieces, written at `into[at, ...)` (room for copyDataLength(pieces) bytes). */
export function writeCopyData(pieces: Buffer[], into: Buffer, at: number): void {
  into[at] = MessageType.CopyData;
  into.writeInt32BE(copyDataLength(pieces) - 1, at + 1);
  let w = at + 5;
  for (const p of pieces) w += p.copy(into, w);
}

/** The whole length of the CopyData message of a body in pieces. */
export function copyDataLength(pieces: Buffer[]): number {
  let n = 5;
  for (const p of pieces) n += p.length;
  return n;
}

const scratch = new ValueSink();

/** One COPY OUT CopyData body rewritten (the whole message); null if it cannot be parsed with certainty. */
export function transformCopyData(body: Buffer, columns: number, transforms: Transforms, layout: CopyLayout): Buffer | null {
  scratch.reset();
  const prepared = prepareCopyData(body, columns, transforms, layout, scratch);
  if (prepared === null) return null;
  scratch.settle();
  return frame(MessageType.CopyData, ...prepared(scratch));
}

/** A piece of a rewritten row: bytes, or a transformed value still in the sink and what to make of it once settled. */
type Part = Buffer | { at: number; length: number; then: (value: Buffer) => Buffer };

/** Where a transformed value's replacement is in the sink. */
interface Replaced { at: number; length: number }

/** The transform's answer for `buf[start, end)`: undefined (unchanged), null (SQL NULL), or where its replacement is in the sink. */
function transformed(t: NonNullable<Transforms[number]>, buf: Buffer, start: number, end: number, format: number, sink: ValueSink): Replaced | null | undefined {
  const n = t(buf, start, end, format, sink);
  if (n === KEEP) return undefined;
  if (n === SQL_NULL) return null;
  const at = sink.at;
  sink.at += n;
  return { at, length: n };
}

// ---------------------------------------------------------------------------------------------
// text format

type TextLayout = Extract<CopyLayout, { format: 'text' }>;

function transformTextRow(line: Buffer, columns: number, transforms: Transforms, o: TextLayout, sink: ValueSink): Part[] | null {
  const bounds = splitText(line, o.delimiter, columns);
  if (bounds === null) return null;
  const parts: Part[] = [];
  let run = 0; // where in `line` the bytes not yet in `parts` start: unchanged fields stay as the server wrote them
  for (let i = 0; i < columns; i++) {
    const t = transforms[i] ?? null;
    if (!t) continue;
    const start = bounds[3 * i]!;
    const end = bounds[3 * i + 1]!;
    if (rangeEquals(line, start, end, o.null)) continue; // PostgreSQL compares the NULL string before de-backslashing
    let masked: Replaced | null | undefined;
    if (bounds[3 * i + 2] === 0) masked = transformed(t, line, start, end, 0, sink);
    else {
      const value = unescapeText(line.subarray(start, end));
      if (!value) return null;
      masked = transformed(t, value, 0, value.length, 0, sink);
    }
    if (masked === undefined) continue;
    parts.push(line.subarray(run, start), masked === null ? o.null : { ...masked, then: (v) => escapeText(v, o) });
    run = end;
  }
  parts.push(line.subarray(run), NEWLINE);
  return parts;
}

let textBounds = new Int32Array(3 * 64);

/**
 * Fields of one text-format row, split at unescaped delimiters (a data delimiter is `\` + it):
 * per field its start, end and whether it holds a backslash, in a scratch array reused by the
 * next call; null unless there are exactly `columns` fields.
 */
function splitText(line: Buffer, delimiter: number, columns: number): Int32Array | null {
  if (textBounds.length < 3 * columns) textBounds = new Int32Array(6 * columns);
  const bounds = textBounds;
  let n = 0;
  let start = 0;
  let escaped = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === BACKSLASH) {
      if (++i >= line.length) return null;
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
  bounds[3 * n] = start; bounds[3 * n + 1] = line.length; bounds[3 * n + 2] = escaped;
  return bounds;
}

function rangeEquals(buf: Buffer, start: number, end: number, other: Buffer): boolean {
  if (end - start !== other.length) return false;
  for (let i = 0; i < other.length; i++) if (buf[start + i] !== other[i]) return false;
  return true;
}

const TEXT_ESCAPES: Record<number, number> = { 0x62: 8, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9, 0x76: 11 };

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
    const simple = TEXT_ESCAPES[e];
    if (simple !== undefined) out.push(simple);
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

const TEXT_ESCAPE_OF: Record<number, number> = { 8: 0x62, 12: 0x66, 10: 0x6e, 13: 0x72, 9: 0x74, 11: 0x76, 0x5c: 0x5c };

/** A value as COPY TO writes it in text format; one equal to the NULL string gets its first byte as an octal escape. */
function escapeText(value: Buffer, o: TextLayout): Buffer {
  let plain = true;
  for (let i = 0; i < value.length && plain; i++) {
    const c = value[i]!;
    plain = c !== o.delimiter && TEXT_ESCAPE_OF[c] === undefined;
  }
  if (plain) return value.length > 0 && value.equals(o.null) ? withOctalFirst(value) : value;
  const out: number[] = [];
  for (const c of value) {
    const e = TEXT_ESCAPE_OF[c];
    if (e !== undefined) out.push(BACKSLASH, e);
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

function transformCsvRow(line: Buffer, columns: number, transforms: Transforms, o: CsvLayout, sink: ValueSink): Part[] | null {
  const fields = splitCsv(line, o);
  if (!fields || fields.length !== columns) return null;
  const parts: Part[] = [];
  let run = 0; // where in `line` the bytes not yet in `parts` start: unchanged fields stay as the server wrote them
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    const t = transforms[i] ?? null;
    if (!t || f.value === null) continue;
    const masked = transformed(t, f.value, 0, f.value.length, 0, sink);
    if (masked === undefined) continue;
    const start = i === 0 ? 0 : fields[i - 1]!.end + 1; // after the delimiter
    const single = fields.length === 1;
    parts.push(line.subarray(run, start), masked === null ? o.null : { ...masked, then: (v) => quoteCsv(v, f.quoted, single, o) });
    run = f.end;
  }
  parts.push(line.subarray(run), NEWLINE);
  return parts;
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
function transformCopyBinary(body: Buffer, columns: number, transforms: Transforms, sink: ValueSink): Part[] | null {
  let at = 0;
  const parts: Part[] = [];
  if (body.subarray(0, BINARY_SIGNATURE.length).equals(BINARY_SIGNATURE)) {
    if (body.length < 19) return null;
    const extension = body.readInt32BE(15);
    at = 19 + extension;
    if (extension < 0 || at > body.length) return null;
    parts.push(body.subarray(0, at));
    if (at === body.length) return parts;
  }
  if (body.length - at < 2) return null;
  const n = body.readInt16BE(at);
  if (n === -1) return at + 2 === body.length ? [body] : null;
  if (n !== columns) return null;
  let run = at; // where in `body` the bytes not yet in `parts` start: unchanged fields stay as they came
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
    const out = t && len >= 0 ? transformed(t, body, valueStart, at, 1, sink) : undefined;
    if (out === undefined) continue;
    parts.push(body.subarray(run, fieldStart), out === null ? lengthOf(null) : { ...out, then: (v) => Buffer.concat([lengthOf(v), v]) });
    run = at;
  }
  parts.push(body.subarray(run, at));
  return at === body.length ? parts : null;
}

function lengthOf(value: Buffer | null): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(value === null ? -1 : value.length);
  return b;
}

/** Whether a COPY statement's text asks for the default text format (tab, \N) or binary only
 *  (used when the plan gives no COPY options). */
export function copyFormatIsPlain(sql: string): boolean {
  const lower = sql.toLowerCase();
  const options = lower.slice(lower.search(/\bto\s+stdout\b/) + 1);
  return !/\b(csv|delimiter|null|header|quote|escape|force_quote|encoding)\b/.test(options);
}
