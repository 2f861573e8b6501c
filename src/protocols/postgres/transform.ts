/**
 * Applies a plan's per-column transforms to DataRow messages as they pass (text and binary
 * formats; COPY OUT data: copy-out.ts). The rewritten message is what the client receives and
 * what the record keeps.
 */
import type { ColumnTransform, ResultColumn } from '../engine.js';
import { MessageType, frame } from './messages.js';

export type Transforms = (ColumnTransform | null)[];

/** The columns to give a plan for rows whose description the engine does not know: `formats`
 *  as a Bind gives them (none: text; one: for every column; else per column). */
export function unknownColumns(count: number, formats: number[]): ResultColumn[] {
  return Array.from({ length: count }, (_, i) => ({ name: `?column${i + 1}?`, tableOid: 0, column: 0, typeOid: 0, format: formatAt(formats, i) }));
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
