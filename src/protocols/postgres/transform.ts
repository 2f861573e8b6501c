/**
 * Applies a plan's per-column transforms to result rows as they pass: DataRow (text and binary
 * formats) and COPY OUT data (text format with the default delimiter, and binary format). The
 * rewritten message is what the client receives and what the record keeps.
 *
 * A row that cannot be parsed with certainty (a COPY in CSV or with its own delimiter, a binary
 * COPY message that is not exactly one tuple) is not passed through: `null` tells the caller to
 * end the result with an error (masking fails closed).
 */
import type { ColumnTransform, ResultColumn } from '../engine.js';
import { MessageType, frame } from './messages.js';

export type Transforms = (ColumnTransform | null)[];

/** The columns to give a plan for rows whose description the engine does not know. */
export function unknownColumns(count: number, format: number): ResultColumn[] {
  return Array.from({ length: count }, (_, i) => ({ name: `?column${i + 1}?`, tableOid: 0, column: 0, typeOid: 0, format }));
}

export function anyTransform(t: Transforms | null): t is Transforms {
  return t !== null && t.some((x) => x !== null);
}

/** A DataRow body rewritten: the whole message, header included. */
export function transformDataRow(body: Buffer, transforms: Transforms, formats: number[]): Buffer {
  const n = body.readInt16BE(0);
  const parts: Buffer[] = [body.subarray(0, 2)];
  let at = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(at);
    at += 4;
    const value = len < 0 ? null : body.subarray(at, at + len);
    if (len > 0) at += len;
    const t = transforms[i] ?? null;
    const out = t && value !== null ? t(value, formatAt(formats, i)) : value;
    parts.push(lengthOf(out));
    if (out) parts.push(out);
  }
  return frame(MessageType.DataRow, ...parts);
}

function formatAt(formats: number[], i: number): number {
  return formats.length === 1 ? formats[0]! : (formats[i] ?? 0);
}

function lengthOf(value: Buffer | null): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(value === null ? -1 : value.length);
  return b;
}

/** One COPY text-format line (default delimiter tab, NULL as \N), rewritten; null if unparseable. */
export function transformCopyText(body: Buffer, transforms: Transforms): Buffer | null {
  if (body.length === 0 || body[body.length - 1] !== 0x0a) return null; // one whole line per message
  const fields = body.subarray(0, body.length - 1).toString('latin1').split('\t');
  const out = fields.map((field, i) => {
    const t = transforms[i] ?? null;
    if (!t || field === '\\N') return field;
    const value = unescapeCopy(field);
    if (value === null) return null;
    const masked = t(value, 0);
    return masked === null ? '\\N' : escapeCopy(masked);
  });
  if (out.some((f) => f === null)) return null;
  return frame(MessageType.CopyData, Buffer.from(out.join('\t') + '\n', 'latin1'));
}

/** COPY text escapes ("File Formats" in the COPY reference), on a latin1 view of the bytes. */
function unescapeCopy(field: string): Buffer | null {
  if (!field.includes('\\')) return Buffer.from(field, 'latin1');
  const bytes: number[] = [];
  for (let i = 0; i < field.length; i++) {
    const c = field.charCodeAt(i);
    if (c !== 0x5c) {
      bytes.push(c);
      continue;
    }
    const e = field[++i];
    if (e === undefined) return null;
    const simple: Record<string, number> = { b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92 };
    if (e in simple) bytes.push(simple[e]!);
    else if (/[0-7]/.test(e)) {
      const m = /^[0-7]{1,3}/.exec(field.slice(i))![0];
      bytes.push(parseInt(m, 8) & 0xff);
      i += m.length - 1;
    } else if (e === 'x' && /^[0-9a-fA-F]/.test(field[i + 1] ?? '')) {
      const m = /^[0-9a-fA-F]{1,2}/.exec(field.slice(i + 1))![0];
      bytes.push(parseInt(m, 16));
      i += m.length;
    } else bytes.push(e.charCodeAt(0));
  }
  return Buffer.from(bytes);
}

function escapeCopy(value: Buffer): string {
  return value.toString('latin1').replace(/[\\\t\n\r\b\f\v]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\b': '\\b', '\f': '\\f', '\v': '\\v' })[c]!);
}

const BINARY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/**
 * One binary-COPY message rewritten: the file header (signature, flags, extension), a tuple
 * (Int16 field count, then Int32 length and bytes per field), or the trailer (-1). PostgreSQL
 * sends the header with the first tuple and one tuple per message; anything else is refused.
 */
export function transformCopyBinary(body: Buffer, transforms: Transforms): Buffer | null {
  let at = 0;
  const parts: Buffer[] = [];
  if (body.subarray(0, BINARY_SIGNATURE.length).equals(BINARY_SIGNATURE)) {
    if (body.length < 19) return null;
    const extension = body.readInt32BE(15);
    at = 19 + extension;
    if (at > body.length) return null;
    parts.push(body.subarray(0, at));
    if (at === body.length) return frame(MessageType.CopyData, ...parts);
  }
  if (body.length - at < 2) return null;
  const n = body.readInt16BE(at);
  if (n === -1) return at + 2 === body.length ? frame(MessageType.CopyData, body) : null;
  parts.push(body.subarray(at, at + 2));
  at += 2;
  for (let i = 0; i < n; i++) {
    if (body.length - at < 4) return null;
    const len = body.readInt32BE(at);
    at += 4;
    if (len > 0 && at + len > body.length) return null;
    const value = len < 0 ? null : body.subarray(at, at + len);
    if (len > 0) at += len;
    const t = transforms[i] ?? null;
    const out = t && value !== null ? t(value, 1) : value;
    parts.push(lengthOf(out));
    if (out) parts.push(out);
  }
  return at === body.length ? frame(MessageType.CopyData, ...parts) : null;
}

/** Whether a COPY statement's text asks for the default text format (tab, \N) or binary only. */
export function copyFormatIsPlain(sql: string): boolean {
  const lower = sql.toLowerCase();
  const options = lower.slice(lower.search(/\bto\s+stdout\b/) + 1);
  return !/\b(csv|delimiter|null|header|quote|escape|force_quote|encoding)\b/.test(options);
}
