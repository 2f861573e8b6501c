/**
 * Applies a plan's per-column transforms to DataRow messages as they pass (text and binary
 * formats; COPY OUT data: copy-out.ts). The rewritten message is what the client receives and
 * what the record keeps.
 */
import type { ColumnTransform, ResultColumn } from '../engine.js';
import { KEEP, ValueSink } from '../value-sink.js';
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

/**
 * Rewrites DataRow messages in two steps: `prepare` runs the transforms over one row where it lies
 * in the received chunk (values as ranges, replacements into one reused sink, nothing allocated)
 * and computes the rewritten message's length; `write` then puts the whole message, header
 * included, wherever the caller has room for it: unchanged stretches of fields are copied in runs,
 * never value by value. A rewriter runs synchronously and holds a row only between the two calls.
 */
export class RowRewriter {
  private readonly sink = new ValueSink();
  /** Per column: where its length field is in the row (fieldAt[n]: the row's end). */
  private fieldAt = new Int32Array(64);
  /** Per column: KEEP, SQL_NULL or the replacement's length; and where in the sink it starts. */
  private result = new Int32Array(64);
  private resultAt = new Int32Array(64);
  private row: Buffer | null = null;
  private rowStart = 0;
  private rowEnd = 0;
  private columns = 0;
  private size = 0;

  /**
   * Runs the transforms over the DataRow body `row[start, end)`: the rewritten message's whole
   * length (header included), or -1 when no transform changed any value (the caller passes the
   * original message on).
   */
  prepare(row: Buffer, start: number, end: number, transforms: Transforms, formats: number[]): number {
    const n = (row[start]! << 8) | row[start + 1]!;
    if (this.fieldAt.length < n + 1) this.growTo(n + 1);
    const fieldAt = this.fieldAt;
    const result = this.result;
    const resultAt = this.resultAt;
    const sink = this.sink;
    sink.at = 0;
    const single = formats.length === 1 ? formats[0]! : -1;
    let changed = false;
    let size = end - start;
    let at = start + 2;
    for (let i = 0; i < n; i++) {
      fieldAt[i] = at;
      const len = (row[at]! << 24) | (row[at + 1]! << 16) | (row[at + 2]! << 8) | row[at + 3]!;
      at += 4;
      const t = transforms[i];
      let r = KEEP;
      if (t && len >= 0) {
        r = t(row, at, at + len, single >= 0 ? single : (formats[i] ?? 0), sink);
        if (r !== KEEP) {
          changed = true;
          resultAt[i] = sink.at;
          if (r > 0) sink.at += r;
          size += (r < 0 ? 0 : r) - len;
        }
      }
      result[i] = r;
      if (len > 0) at += len;
    }
    fieldAt[n] = at;
    if (!changed) return -1;
    this.row = row;
    this.rowStart = start;
    this.rowEnd = end;
    this.columns = n;
    this.size = 5 + size;
    return this.size;
  }

  /** Writes the message `prepare` last measured at `into[at, at + length)`. */
  write(into: Buffer, at: number): void {
    const row = this.row!;
    this.row = null; // holds no buffer past this call
    const fieldAt = this.fieldAt;
    const result = this.result;
    const resultAt = this.resultAt;
    const replacements = this.sink.bytes;
    into[at] = MessageType.DataRow;
    writeInt32(into, at + 1, this.size - 1);
    let w = at + 5;
    let from = this.rowStart; // start in `row` of the unchanged stretch not yet copied
    for (let i = 0; i < this.columns; i++) {
      const r = result[i]!;
      if (r === KEEP) continue;
      w += copyBytes(row, from, fieldAt[i]!, into, w);
      writeInt32(into, w, r);
      w += 4;
      if (r > 0) w += copyBytes(replacements, resultAt[i]!, resultAt[i]! + r, into, w);
      from = fieldAt[i + 1]!;
    }
    copyBytes(row, from, this.rowEnd, into, w);
  }

  private growTo(n: number): void {
    this.fieldAt = new Int32Array(2 * n);
    this.result = new Int32Array(2 * n);
    this.resultAt = new Int32Array(2 * n);
  }
}

/** Short runs by hand: a native copy costs more than a few dozen bytes. */
function copyBytes(src: Buffer, start: number, end: number, into: Buffer, at: number): number {
  const n = end - start;
  if (n <= 48) for (let i = 0; i < n; i++) into[at + i] = src[start + i]!;
  else src.copy(into, at, start, end);
  return n;
}

function writeInt32(into: Buffer, at: number, value: number): void {
  into[at] = value >>> 24;
  into[at + 1] = value >>> 16;
  into[at + 2] = value >>> 8;
  into[at + 3] = value;
}

const rewriter = new RowRewriter();

/**
 * A DataRow body rewritten: the whole message, header included, in one allocation. null when no
 * transform changed any value: the caller passes the original message on.
 */
export function transformDataRow(body: Buffer, transforms: Transforms, formats: number[]): Buffer | null {
  const size = rewriter.prepare(body, 0, body.length, transforms, formats);
  if (size < 0) return null;
  const msg = Buffer.allocUnsafe(size);
  rewriter.write(msg, 0);
  return msg;
}

function formatAt(formats: number[], i: number): number {
  return formats.length === 1 ? formats[0]! : (formats[i] ?? 0);
}
