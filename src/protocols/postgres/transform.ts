/**
 * Applies a plan's per-column transforms to DataRow messages as they pass (text and binary
 * formats; COPY OUT data: copy-out.ts). The rewritten message is what the client receives and
 * what the record keeps.
 */
import type { ColumnTransform, ResultColumn } from '../engine.js';
import { MessageType } from './messages.js';

export type Transforms = (ColumnTransform | null)[];

/** The columns to give a plan for rows whose description the engine does not know: `formats`
 *  as a Bind gives them (none: text; one: for every column; else per column). */
export function unknownColumns(count: number, formats: number[]): ResultColumn[] {
  return Array.from({ length: count }, (_, i) => ({ name: `?column${i + 1}?`, tableOid: 0, column: 0, typeOid: 0, format: formatAt(formats, i) }));
}

export function anyTransform(t: Transforms | null): t is Transforms {
  return t !== null && t.some((x) => x !== null);
}

/** Scratch of transformDataRow (it runs synchronously and never re-enters): per column, the
 *  replacement (undefined: unchanged), and where its length field is in the body. */
const replaced: (Buffer | null | undefined)[] = [];
let fieldAt = new Int32Array(64);

/**
 * A DataRow body rewritten: the whole message, header included, built in one allocation (values
 * no transform changed are copied in runs, never sliced one by one). null when no transform
 * changed any value (a transform returning its own argument): the caller passes the original
 * message on.
 */
export function transformDataRow(body: Buffer, transforms: Transforms, formats: number[]): Buffer | null {
  const n = (body[0]! << 8) | body[1]!;
  if (fieldAt.length < n + 1) fieldAt = new Int32Array(2 * (n + 1));
  // First pass: run the transforms, note each field's offset and every changed value.
  let changed = 0;
  let size = body.length;
  let at = 2;
  for (let i = 0; i < n; i++) {
    fieldAt[i] = at;
    const len = body.readInt32BE(at);
    at += 4;
    const t = transforms[i];
    let out: Buffer | null | undefined;
    if (t && len >= 0) {
      const value = body.subarray(at, at + len);
      const next = t(value, formatAt(formats, i));
      if (next !== value) {
        out = next;
        changed++;
        size += (next === null ? 0 : next.length) - len;
      }
    }
    replaced[i] = out;
    if (len > 0) at += len;
  }
  fieldAt[n] = at;
  if (changed === 0) return null;
  // Second pass: unchanged stretches copied whole, replaced values written with their lengths.
  const msg = Buffer.allocUnsafe(5 + size);
  msg[0] = MessageType.DataRow;
  msg.writeInt32BE(4 + size, 1);
  let w = 5;
  let from = 0; // start in `body` of the unchanged stretch not yet copied
  for (let i = 0; i < n; i++) {
    const out = replaced[i];
    if (out === undefined) continue;
    replaced[i] = undefined; // holds no buffer past this call
    w += body.copy(msg, w, from, fieldAt[i]!);
    w = msg.writeInt32BE(out === null ? -1 : out.length, w);
    if (out !== null) w += out.copy(msg, w);
    from = fieldAt[i + 1]!;
  }
  body.copy(msg, w, from, body.length);
  return msg;
}

function formatAt(formats: number[], i: number): number {
  return formats.length === 1 ? formats[0]! : (formats[i] ?? 0);
}
