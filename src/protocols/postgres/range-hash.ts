import { createHash, type Hash } from 'node:crypto';

/** A range up to this long is copied to the scratch rather than given to `update` on its own. */
const SMALL_RANGE = 1024;
const SCRATCH_BYTES = 16 * 1024;

/**
 * SHA-256 over byte ranges of received chunks. Adjacent ranges of one chunk extend the pending
 * range, so a run of messages costs one `update`, not one per message. Short ranges that are not
 * adjacent (rewritten rows of a masked result, each its own buffer) are gathered in a scratch
 * buffer, allocated the first time it is needed, and hashed a scratch-full at a time: a native
 * `update` call costs more than copying a few hundred bytes.
 */
export class RangeHash {
  private readonly hash: Hash = createHash('sha256');
  private buffer: Buffer | null = null;
  private start = 0;
  private end = 0;
  private scratch: Buffer | null = null;
  private used = 0;

  add(buffer: Buffer, start: number, end: number): void {
    if (buffer === this.buffer && start === this.end) {
      this.end = end;
      return;
    }
    this.flush();
    this.buffer = buffer;
    this.start = start;
    this.end = end;
  }

  digest(): string {
    if (this.used > 0) {
      this.flush();
      this.drainScratch();
    } else if (this.buffer && this.end > this.start) {
      this.hash.update(this.buffer.subarray(this.start, this.end)); // one range: no scratch
    }
    this.buffer = null;
    return this.hash.digest('hex');
  }

  private flush(): void {
    const length = this.end - this.start;
    if (this.buffer && length > 0) {
      if (length <= SMALL_RANGE) {
        this.scratch ??= Buffer.allocUnsafe(SCRATCH_BYTES);
        if (this.used + length > SCRATCH_BYTES) this.drainScratch();
        this.used += this.buffer.copy(this.scratch, this.used, this.start, this.end);
      } else {
        this.drainScratch();
        this.hash.update(this.buffer.subarray(this.start, this.end));
      }
    }
    this.buffer = null;
    this.start = this.end = 0;
  }

  private drainScratch(): void {
    if (this.used === 0) return;
    this.hash.update(this.scratch!.subarray(0, this.used));
    this.used = 0;
  }
}
