/**
 * What the client gets for one received chunk once some of its messages were replaced (masked
 * rows, rewritten notices, a cut-off error): relay.ts builds it here, in order.
 *
 * It is written into the received chunk itself for as long as the output is no longer than what
 * it replaces, which is the usual case (a mask keeps a value's length or shortens it): rows are
 * rewritten where they lie, unchanged stretches stay where they are (or move down by one
 * memmove), and nothing is allocated. The first piece that could overtake bytes not yet read (a
 * longer replacement, a COPY row whose length is known only when placed) or that must not move
 * (a message the record holds by its place in the chunk: see `pass`) goes to a buffer of its own
 * instead, and so does everything after it: the chunk's bytes from there on are never written.
 *
 * Why it is safe to write into the chunk: relay.ts owns it (the framing reader hands a batch's
 * buffer over), bytes before `base` may be in flight to the client and are never touched, and
 * writes land only before the message being handled (`at` never passes a frame's start).
 */

/** A place given by `reserveRow`: >= 0 an offset in the chunk, < 0 (~offset) one in the spill buffer. */
export type Place = number;

export class ChunkOutput {
  /** The output written in the chunk: chunk[base, at). */
  private at: number;
  /** Everything after the first piece that could not go in the chunk. */
  private spilled: Assembly | null = null;

  constructor(private readonly chunk: Buffer, private readonly base: number) {
    this.at = base;
  }

  /**
   * Passes chunk[start, end) on unchanged. `held`: some message in it was given to the record by
   * its place in the chunk (a DataRow's hash range, a notice), so its bytes may not move.
   */
  pass(start: number, end: number, held: boolean): void {
    if (end <= start) return;
    if (this.spilled === null) {
      if (this.at === start) {
        this.at = end;
        return;
      }
      if (!held) {
        this.chunk.copyWithin(this.at, start, end);
        this.at += end - start;
        return;
      }
    }
    this.spill().copy(this.chunk, start, end);
  }

  /** Sends `message` in place of the chunk's frame that ends at `frameEnd`. */
  insert(message: Buffer, frameEnd: number): void {
    if (this.spilled === null && this.at + message.length <= frameEnd) {
      this.at += message.copy(this.chunk, this.at);
      return;
    }
    this.spill().copy(message, 0, message.length);
  }

  /**
   * Room for a rewritten message of `size` bytes in place of the chunk's frame starting at
   * `frameStart`, written later (RowRewriter.write, which reads the frame as it writes). In the
   * chunk when the writing can never get ahead of the reading: `growth` is how far ahead of its
   * source position the rewrite gets at most (RowRewriter.growthOf).
   */
  reserveRow(size: number, growth: number, frameStart: number): Place {
    if (this.spilled === null && growth <= frameStart - this.at) {
      const place = this.at;
      this.at += size;
      return place;
    }
    return ~this.spill().reserve(size);
  }

  /** Room for `size` bytes after everything so far (a COPY row, placed once its length is known). */
  reserve(size: number): Place {
    return ~this.spill().reserve(size);
  }

  /** The buffer a place is in (read when writing there: the spill buffer moves as it grows). */
  bufferOf(place: Place): Buffer {
    return place >= 0 ? this.chunk : this.spilled!.bytes;
  }

  offsetOf(place: Place): number {
    return place >= 0 ? place : ~place;
  }

  /** The output, in order: one or two pieces. */
  pieces(): Buffer[] {
    const out: Buffer[] = [];
    if (this.at > this.base) out.push(this.chunk.subarray(this.base, this.at));
    if (this.spilled !== null && this.spilled.length > 0) out.push(this.spilled.bytes.subarray(0, this.spilled.length));
    return out;
  }

  private spill(): Assembly {
    return (this.spilled ??= new Assembly(this.chunk.length - this.at + 256));
  }
}

/**
 * Bytes copied in order into one buffer, grown (by a new buffer) when needed. What was written is
 * never changed afterwards: ranges of it given to the record (RangeHash, kept rows) stay valid,
 * in an outgrown buffer too.
 */
class Assembly {
  bytes: Buffer;
  length = 0;

  constructor(capacity: number) {
    this.bytes = Buffer.allocUnsafe(capacity);
  }

  copy(src: Buffer, start: number, end: number): void {
    if (end <= start) return;
    const at = this.reserve(end - start);
    src.copy(this.bytes, at, start, end);
  }

  /** Room for `n` bytes: where they go in `bytes` (counted as written). */
  reserve(n: number): number {
    if (this.length + n > this.bytes.length) {
      const next = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, this.length + n));
      this.bytes.copy(next, 0, 0, this.length);
      this.bytes = next;
    }
    const at = this.length;
    this.length += n;
    return at;
  }
}
