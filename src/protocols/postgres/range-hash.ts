import { createHash, type Hash } from 'node:crypto';

/**
 * SHA-256 over byte ranges of received chunks. Adjacent ranges of one chunk extend the pending
 * range, so a run of messages costs one `update`, not one per message.
 */
export class RangeHash {
  private readonly hash: Hash = createHash('sha256');
  private buffer: Buffer | null = null;
  private start = 0;
  private end = 0;

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
    this.flush();
    return this.hash.digest('hex');
  }

  private flush(): void {
    if (this.buffer && this.end > this.start) this.hash.update(this.buffer.subarray(this.start, this.end));
    this.buffer = null;
    this.start = this.end = 0;
  }
}
