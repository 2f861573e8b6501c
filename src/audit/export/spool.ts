/** The bundle's spool: files written in large chunks and hashed as they go, and a compact list of seqs. */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { canonicalJson } from '../chain.js';
import type { EventPayload } from '../event.js';

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

/**
 * The payload files of a bundle, spooled end to end in one file (a million small files would
 * cost more than their bytes), with per payload its seq, place and SHA-256 (40 bytes, no object),
 * and the seqs of payloads that were pruned.
 */
export class PayloadSpool {
  readonly seqs = new NumberList();
  private readonly offsets = new NumberList();
  private readonly sizes = new NumberList();
  private shas = Buffer.alloc(32 * 1024);
  readonly pruned = new NumberList();

  private constructor(private readonly file: SpoolFile) {}

  static async create(path: string): Promise<PayloadSpool> {
    return new PayloadSpool(await SpoolFile.create(path));
  }

  /** Spools one event's payload as its canonical JSON (null: pruned); the SHA-256 hex of what was written, or null. */
  async add(seq: number, payload: EventPayload | null): Promise<string | null> {
    if (payload === null) {
      this.pruned.push(seq);
      return null;
    }
    const bytes = Buffer.from(canonicalJson(payload), 'utf8');
    const sha = createHash('sha256').update(bytes).digest();
    const i = this.seqs.length;
    if (this.shas.length < 32 * (i + 1)) this.shas = Buffer.concat([this.shas, Buffer.alloc(this.shas.length)]);
    sha.copy(this.shas, 32 * i);
    this.seqs.push(seq);
    this.offsets.push(this.file.size);
    this.sizes.push(bytes.length);
    await this.file.write(bytes);
    return sha.toString('hex');
  }

  async close(): Promise<void> {
    await this.file.close();
  }

  /** The archive entries `payloads/<seq>.json`, in seq order, as slices of the spool file. */
  *entries(): Generator<{ name: string; size: number; sha256: string; source: { file: string; offset: number } }> {
    for (let i = 0; i < this.seqs.length; i++) {
      yield {
        name: `payloads/${this.seqs.at(i)}.json`, size: this.sizes.at(i),
        sha256: this.shas.toString('hex', 32 * i, 32 * (i + 1)), source: { file: this.file.path, offset: this.offsets.at(i) },
      };
    }
  }
}
