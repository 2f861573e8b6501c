/** The bundle's spool: files written in large chunks and hashed as they go, and a compact list of seqs. */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';

/** A file written in large chunks, hashed as it is written. Text is gathered as a string, so a line costs no Buffer of its own. */
export class SpoolFile {
  private text = '';
  private chunks: Buffer[] = [];
  private pending = 0;
  private readonly hash = createHash('sha256');
  /** Bytes written so far (text counted as UTF-8). */
  size = 0;

  private constructor(readonly path: string, private readonly fh: FileHandle) {}

  static async create(path: string): Promise<SpoolFile> {
    return new SpoolFile(path, await open(path, 'wx', 0o600));
  }

  async write(data: string | Buffer): Promise<void> {
    if (typeof data === 'string') {
      this.text += data;
      this.size += Buffer.byteLength(data, 'utf8');
      if (this.text.length >= 1 << 18) this.takeText();
    } else {
      this.takeText();
      this.chunks.push(data);
      this.pending += data.length;
      this.size += data.length;
    }
    if (this.pending >= 1 << 20) await this.flush();
  }

  private takeText(): void {
    if (this.text === '') return;
    const b = Buffer.from(this.text, 'utf8');
    this.text = '';
    this.chunks.push(b);
    this.pending += b.length;
  }

  private async flush(): Promise<void> {
    this.takeText();
    if (this.pending === 0) return;
    const b = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.pending);
    this.chunks = [];
    this.pending = 0;
    this.hash.update(b);
    await this.fh.write(b);
  }

  /** Flushes and closes; the SHA-256 of everything written. */
  async close(): Promise<string> {
    await this.flush();
    await this.fh.close();
    return this.hash.digest('hex');
  }
}

/** A growable list of numbers (seqs) without an object per item. */
export class NumberList {
  private a = new Float64Array(1024);
  length = 0;
  push(n: number): void {
    if (this.length === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.length++] = n;
  }
  at(i: number): number {
    return this.a[i]!;
  }
  toArray(): number[] {
    return Array.from(this.a.subarray(0, this.length));
  }
  /** Whether a sorted list holds n. */
  has(n: number): boolean {
    let lo = 0;
    let hi = this.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.a[mid]!;
      if (v === n) return true;
      if (v < n) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }
}
