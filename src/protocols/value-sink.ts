/**
 * Where column transforms (engine.ts ColumnTransform) write replacement values.
 *
 * A transform is given a value as a range of the message it is in and writes its replacement
 * into a sink: no Buffer per value in, none out. The caller copies the bytes into the rewritten
 * message, so a sink is scratch, reused from one value (and row) to the next.
 *
 * Some replacements are filled in later, many at once (the hash mask's tokens: one native call
 * for a whole chunk of rows, see policy/masking/hash-mask.ts): the transform writes a placeholder
 * of the final length and queues the rest in a batch of the sink's. Whoever reads the bytes calls
 * `settle()` first; `reset()` forgets what was queued with the bytes it was for.
 */

/** Replacements a sink holds placeholders for, completed by `settle`. */
export interface SinkBatch {
  /** Writes every queued replacement into `sink.bytes` and empties the batch. */
  settle(sink: ValueSink): void;
  /** Drops what is queued (its bytes are being reused). */
  clear(): void;
}

/** A transform's answer: the value passes unchanged. */
export const KEEP = -2;
/** A transform's answer: the value becomes SQL NULL. */
export const SQL_NULL = -1;

export class ValueSink {
  /** Replacements are written at `bytes[at, at + n)`, after `reserve(n)`. */
  bytes: Buffer;
  /** Where the next replacement starts; the caller, not the transform, moves it on. */
  at = 0;

  /** Batches by owner (one per hash key in use; usually none). */
  private batches: Map<object, SinkBatch> | null = null;

  constructor(size = 1024) {
    this.bytes = Buffer.allocUnsafe(size);
  }

  /** The sink's batch for `owner`, made by `create` the first time. */
  batch<B extends SinkBatch>(owner: object, create: () => B): B {
    this.batches ??= new Map();
    let b = this.batches.get(owner) as B | undefined;
    if (b === undefined) this.batches.set(owner, (b = create()));
    return b;
  }

  /** Completes every placeholder: call before reading `bytes`. */
  settle(): void {
    if (this.batches !== null) for (const b of this.batches.values()) b.settle(this);
  }

  /** Starts over at 0, dropping anything queued. */
  reset(): void {
    this.at = 0;
    if (this.batches !== null) for (const b of this.batches.values()) b.clear();
  }

  /** Room for `n` bytes at `at`; returns `bytes`, which may be a new, larger buffer (what was
   *  written before `at` is kept). */
  reserve(n: number): Buffer {
    if (this.at + n > this.bytes.length) {
      const next = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, this.at + n));
      this.bytes.copy(next, 0, 0, this.at);
      this.bytes = next;
    }
    return this.bytes;
  }

  /** Writes `src[start, end)` at `at` (not moving `at`); returns its length. */
  write(src: Uint8Array, start: number, end: number): number {
    const n = end - start;
    return copyBytes(src, start, end, this.reserve(n), this.at);
  }
}

/** Copies `src[start, end)` to `into[at, ...)`; returns its length. Short runs by hand: a native
 *  copy costs more than a few dozen bytes (this runs per value and per row). */
export function copyBytes(src: Uint8Array, start: number, end: number, into: Uint8Array, at: number): number {
  const n = end - start;
  if (n <= 48) for (let i = 0; i < n; i++) into[at + i] = src[start + i]!;
  else into.set(src.subarray(start, end), at);
  return n;
}

/** A transform of the shape engine.ts ColumnTransform names (repeated here to keep this module free of imports). */
type RangeTransform = (row: Buffer, start: number, end: number, format: number, sink: ValueSink) => number;

/**
 * A transform from a function of whole values (a Buffer in, a Buffer or null out; returning its
 * argument leaves the value unchanged): for plans where a Buffer per value does not matter.
 */
export function valueTransform(fn: (value: Buffer, format: number) => Buffer | null): RangeTransform {
  return (row, start, end, format, sink) => {
    const value = row.subarray(start, end);
    const next = fn(value, format);
    if (next === value) return KEEP;
    return next === null ? SQL_NULL : sink.write(next, 0, next.length);
  };
}

const scratch = new ValueSink();

/** A transform applied to one whole value: the value itself when unchanged, null for SQL NULL,
 *  else a new Buffer of the replacement (COPY data, tests). */
export function applyTransform(t: RangeTransform, value: Buffer, format: number): Buffer | null {
  scratch.reset();
  const n = t(value, 0, value.length, format, scratch);
  if (n === KEEP) return value;
  if (n === SQL_NULL) return null;
  scratch.settle();
  return Buffer.from(scratch.bytes.subarray(0, n));
}
