/**
 * Applies a plan's per-column transforms to DataRow messages as they pass (text and binary
 * formats; COPY OUT data: copy-out.ts). The rewritten message is what the client receives and
 * what the record keeps.
 */
import type { ColumnTransform, ResultColumn } from '../engine.js';
import { KEEP, ValueSink, copyBytes } from '../value-sink.js';
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
 * in the received chunk (values as ranges, replacements into one reused sink, nothing allocated),
 * computes the rewritten message's length and queues the row; `write` then puts a queued message,
 * header included, wherever the caller has room for it: unchanged stretches of fields are copied
 * in runs, never value by value.
 *
 * Rows queue until `clear`, so a caller can prepare a whole chunk's rows, reserve their room,
 * and write them after one `settle` (the sink's batched replacements, such as hash tokens, are
 * computed then: value-sink.ts). A queued row refers to its buffer: the caller writes and clears
 * before that buffer is reused.
 *
 * A row may be written over its own bytes (in-place rewriting, chunk-output.ts): `write` copies
 * front to back, so that is safe when it starts no later than the row's own message and never
 * gets more than `growthOf(k)` bytes ahead of where it reads.
 */
export class RowRewriter {
  private readonly sink = new ValueSink();
  /** Every changed value of the queued rows (row k's from firstChange[k]): where its field
   *  (length word included) starts and ends in the row, KEEP-less result (SQL_NULL or the
   *  replacement's length), and where the replacement starts in the sink. */
  private changeFrom = new Int32Array(256);
  private changeTo = new Int32Array(256);
  private changeResult = new Int32Array(256);
  private changeAt = new Int32Array(256);
  private changes = 0;
  /** Per queued row. */
  private rows: Buffer[] = [];
  private rowStart = new Int32Array(64);
  private rowEnd = new Int32Array(64);
  private firstChange = new Int32Array(65);
  private sizes = new Int32Array(64);
  private growths = new Int32Array(64);
  private count = 0;
  private settled = true;

  /** Rows prepared and not yet cleared. */
  get queued(): number {
    return this.count;
  }

  /**
   * Runs the transforms over the DataRow body `row[start, end)`: the rewritten message's whole
   * length (header included), with the row queued as number `queued - 1`; or -1 when no
   * transform changed any value (nothing is queued: the caller passes the original message on).
   */
  prepare(row: Buffer, start: number, end: number, transforms: Transforms, formats: number[]): number {
    const n = (row[start]! << 8) | row[start + 1]!;
    if (this.changeFrom.length < this.changes + n) this.growChanges(this.changes + n);
    const sink = this.sink;
    const sinkStart = sink.at;
    const first = this.changes;
    const single = formats.length === 1 ? formats[0]! : -1;
    let j = first;
    let size = end - start;
    let growth = 0; // how far the rewritten row's prefix gets past the original's, at most
    let at = start + 2;
    for (let i = 0; i < n; i++) {
      const fieldStart = at;
      const len = (row[at]! << 24) | (row[at + 1]! << 16) | (row[at + 2]! << 8) | row[at + 3]!;
      at += 4;
      const t = transforms[i];
      if (t && len >= 0) {
        const r = t(row, at, at + len, single >= 0 ? single : (formats[i] ?? 0), sink);
        if (r !== KEEP) {
          this.changeFrom[j] = fieldStart;
          this.changeTo[j] = at + len;
          this.changeResult[j] = r;
          this.changeAt[j] = sink.at;
          j++;
          if (r > 0) sink.at += r;
          size += (r < 0 ? 0 : r) - len;
          if (size - (end - start) > growth) growth = size - (end - start);
        }
      }
      if (len > 0) at += len;
    }
    if (j === first) {
      sink.at = sinkStart;
      return -1;
    }
    const k = this.count;
    if (k === this.sizes.length) this.growRows();
    this.rows[k] = row;
    this.rowStart[k] = start;
    this.rowEnd[k] = end;
    this.firstChange[k] = first;
    this.sizes[k] = 5 + size;
    this.growths[k] = growth;
    this.changes = j;
    this.firstChange[k + 1] = j;
    this.count = k + 1;
    this.settled = false;
    return 5 + size;
  }

  /** Writes queued row `k` (the message `prepare` measured) at `into[at, at + length)`. */
  write(k: number, into: Buffer, at: number): void {
    if (!this.settled) {
      this.sink.settle();
      this.settled = true;
    }
    const row = this.rows[k]!;
    const replacements = this.sink.bytes;
    // Where `row`'s bytes are in `into` when the row lies inside it (written in place), else -1.
    // The same Buffer first: the common case, and `.buffer` and `.byteOffset` are slow getters.
    const shift = row === into ? 0 : row.buffer === into.buffer && row.byteOffset >= into.byteOffset && row.byteOffset + this.rowEnd[k]! <= into.byteOffset + into.length
      ? row.byteOffset - into.byteOffset : -1;
    into[at] = MessageType.DataRow;
    writeInt32(into, at + 1, this.sizes[k]! - 1);
    let w = at + 5;
    let from = this.rowStart[k]!; // start in `row` of the unchanged stretch not yet copied
    for (let j = this.firstChange[k]!, last = this.firstChange[k + 1]!; j < last; j++) {
      const r = this.changeResult[j]!;
      w += shift < 0 ? copyBytes(row, from, this.changeFrom[j]!, into, w) : moveDown(into, from + shift, this.changeFrom[j]! + shift, w);
      writeInt32(into, w, r);
      w += 4;
      if (r > 0) w += copyBytes(replacements, this.changeAt[j]!, this.changeAt[j]! + r, into, w);
      from = this.changeTo[j]!;
    }
    if (shift < 0) copyBytes(row, from, this.rowEnd[k]!, into, w);
    else moveDown(into, from + shift, this.rowEnd[k]! + shift, w);
  }

  /** How many bytes ahead of its own message's position `write` gets at most, writing row `k`
   *  (0 when no replacement is longer than what it replaces). */
  growthOf(k: number): number {
    return this.growths[k]!;
  }

  /** The whole length of queued row `k`'s rewritten message. */
  sizeOf(k: number): number {
    return this.sizes[k]!;
  }

  /** Forgets the queued rows (and holds no buffer of theirs). */
  clear(): void {
    this.rows.fill(null as unknown as Buffer, 0, this.count);
    this.count = 0;
    this.changes = 0;
    this.sink.reset();
    this.settled = true;
  }

  private growChanges(n: number): void {
    const grown = (a: Int32Array) => { const b = new Int32Array(2 * n); b.set(a.subarray(0, this.changes)); return b; };
    this.changeFrom = grown(this.changeFrom);
    this.changeTo = grown(this.changeTo);
    this.changeResult = grown(this.changeResult);
    this.changeAt = grown(this.changeAt);
  }

  private growRows(): void {
    const n = 2 * this.sizes.length;
    const grown = (a: Int32Array, size = n) => { const b = new Int32Array(size); b.set(a); return b; };
    this.rowStart = grown(this.rowStart);
    this.rowEnd = grown(this.rowEnd);
    this.sizes = grown(this.sizes);
    this.growths = grown(this.growths);
    this.firstChange = grown(this.firstChange, n + 1);
  }
}

/** Moves `bytes[start, end)` to `at` (never after `start`); returns its length. Nothing moves
 *  when it is already there, as in a row rewritten in place before anything shrank. */
function moveDown(bytes: Buffer, start: number, end: number, at: number): number {
  if (at !== start && end > start) bytes.copyWithin(at, start, end);
  return end - start;
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
  rewriter.write(0, msg, 0);
  rewriter.clear();
  return msg;
}

function formatAt(formats: number[], i: number): number {
  return formats.length === 1 ? formats[0]! : (formats[i] ?? 0);
}
