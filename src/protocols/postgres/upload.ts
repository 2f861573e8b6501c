/**
 * What the client uploads with COPY FROM STDIN (CopyData bodies), for query.end's `upload`: kept
 * while the payload budget lasts, counted (text lines or binary COPY tuples) and hashed, apart
 * from what came back.
 */
import { createHash, type Hash } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { MAX_SETS, type PayloadBudget } from './budget.js';
import { BodyReader } from './messages.js';

/** Characters of a CopyFail message kept. */
const MAX_FAILURE = 1000;

/** One COPY FROM STDIN of the statement: one per CopyInResponse. */
export interface UploadCopy {
  /** Index of the statement that ran the COPY (commands completed before it). */
  statement: number;
  /** CopyInResponse's overall format: text (text and CSV) or binary. */
  format: 'text' | 'binary';
  /** text: lines (newline-terminated, plus an unterminated last one; the `\.` end marker is not
   *  a row; a CSV value holding a newline counts twice); binary: tuples read from the binary COPY
   *  framing (counting stops at data that is not valid binary COPY: the server rejects it too). */
  rows: number;
  /** Data bytes (CopyData bodies). */
  bytes: number;
  /** The data as uploaded, while the payload budget lasted: text as UTF-8 (CopyData bodies
   *  joined, so a character split across messages stays whole), binary as one `\x` hex string. */
  data: string;
  /** Part of the data was not kept. */
  truncated: boolean;
  /** How the upload ended: CopyDone, CopyFail (with the client's message, its first 1000
   *  characters then `…`), or not seen. */
  end: 'done' | 'failed' | null;
  failure?: string;
}

/** What the client uploaded under the statement (StatementEnd.upload), apart from what came back. */
export interface StatementUpload {
  /** CopyData messages the client sent, and their data bytes (bodies, without type and length). */
  messages: number;
  bytes: number;
  rows: number;
  /** SHA-256 of the uploaded data: every CopyData body, in order (for one COPY, the file's hash:
   *  `sha256sum data.csv` matches when the client sent the file as is). */
  sha256: string;
  /** Some data, or a COPY past the 1000th, was not kept. */
  truncated: boolean;
  copies: UploadCopy[];
}

/** Rows of COPY data fed in pieces split anywhere. */
interface RowCounter {
  readonly rows: number;
  feed(b: Buffer): void;
}

/** Counts text COPY rows: newlines, leaving out the `\.` end-of-data line. */
class LineCounter implements RowCounter {
  private lines = 0;
  /** Bytes of the line not yet terminated, and its bytes while it is at most 3 long. */
  private len = 0;
  private head = '';

  get rows(): number {
    return this.lines + (this.len > 0 && !isEndMarker(this.head, this.len) ? 1 : 0);
  }

  feed(b: Buffer): void {
    let from = 0;
    for (;;) {
      const nl = b.indexOf(10, from);
      if (nl < 0) {
        const n = b.length - from;
        if (n > 0) {
          this.head = this.len + n <= 3 ? this.head + b.toString('latin1', from) : '';
          this.len += n;
        }
        return;
      }
      const len = this.len + nl - from;
      // Only a line of 2 or 3 bytes can be the marker: the common line costs no string.
      if (!((len === 2 || len === 3) && isEndMarker(this.head + b.toString('latin1', from, nl), len))) this.lines++;
      this.len = 0;
      this.head = '';
      from = nl + 1;
    }
  }
}

function isEndMarker(line: string, len: number): boolean {
  return (len === 2 && line === '\\.') || (len === 3 && line === '\\.\r');
}

/** "PGCOPY\n\377\r\n\0": the binary COPY signature. */
const BINARY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const enum Binary { Header, Extension, Count, Length, Field, Done, Invalid }

/**
 * Counts binary COPY tuples across CopyData messages split anywhere: header (signature, flags,
 * extension), then per tuple an Int16 field count and per field an Int32 length (-1 NULL) and
 * that many bytes, then the Int16 -1 trailer. Field bytes are skipped, not read: the cost is per
 * field, not per byte.
 */
class TupleCounter implements RowCounter {
  private tuples = 0;
  private state = Binary.Header;
  /** Header bytes read, or bytes of the integer being read. */
  private got = 0;
  private acc = 0;
  private skip = 0;
  private fields = 0;

  get rows(): number {
    return this.tuples;
  }

  feed(b: Buffer): void {
    let i = 0;
    const n = b.length;
    while (i < n) {
      switch (this.state) {
        case Binary.Header: {
          const byte = b[i++]!;
          if (this.got < 11) {
            if (byte !== BINARY_SIGNATURE[this.got]) return void (this.state = Binary.Invalid);
          } else if (this.got >= 15) this.acc = this.acc * 256 + byte; // header extension length
          if (++this.got === 19) {
            if (this.acc >= 0x80000000) return void (this.state = Binary.Invalid);
            this.skip = this.acc;
            this.next(this.skip > 0 ? Binary.Extension : Binary.Count);
          }
          break;
        }
        case Binary.Extension:
        case Binary.Field: {
          const take = Math.min(this.skip, n - i);
          i += take;
          this.skip -= take;
          if (this.skip === 0) this.next(this.state === Binary.Extension || this.fields === 0 ? Binary.Count : Binary.Length);
          break;
        }
        case Binary.Count:
        case Binary.Length: {
          this.acc = this.acc * 256 + b[i++]!;
          if (++this.got < (this.state === Binary.Count ? 2 : 4)) break;
          if (this.state === Binary.Count) {
            const count = this.acc >= 0x8000 ? this.acc - 0x10000 : this.acc;
            if (count === -1) return void (this.state = Binary.Done);
            if (count < 0) return void (this.state = Binary.Invalid);
            this.tuples++;
            this.fields = count;
            this.next(count > 0 ? Binary.Length : Binary.Count);
          } else {
            const len = this.acc >= 0x80000000 ? this.acc - 0x100000000 : this.acc;
            if (len < -1) return void (this.state = Binary.Invalid);
            this.fields--;
            this.skip = Math.max(len, 0);
            this.next(this.skip > 0 ? Binary.Field : this.fields > 0 ? Binary.Length : Binary.Count);
          }
          break;
        }
        default:
          return; // after the trailer, or invalid: nothing more is counted
      }
    }
  }

  private next(state: Binary): void {
    this.state = state;
    this.got = 0;
    this.acc = 0;
  }
}

/** One COPY FROM STDIN being uploaded. */
interface Upload {
  copy: UploadCopy;
  /** Listed in upload.copies (the first MAX_SETS are). */
  listed: boolean;
  decoder: StringDecoder | null;
  counter: RowCounter;
}

/** CopyFail body: the client's message, its first MAX_FAILURE characters (a client frame may be
 *  64 MiB; the budget is for data). */
export function copyFailMessage(body: Buffer): string {
  const message = new BodyReader(body, 'CopyFail').cstring();
  return message.length > MAX_FAILURE ? `${message.slice(0, MAX_FAILURE)}…` : message;
}

/** The COPY FROM STDIN uploads of one statement run; created by the first copyIn() or uploaded(). */
export class UploadLog {
  private readonly record: StatementUpload = { messages: 0, bytes: 0, rows: 0, sha256: '', truncated: false, copies: [] };
  private readonly hash: Hash = createHash('sha256');
  private current: Upload | null = null;

  /** `text`: the client encoding's decoder when it is not UTF-8 (each message decoded on its own,
   *  bytes it cannot read kept as \x hex); null decodes UTF-8 across message boundaries. */
  constructor(private readonly budget: PayloadBudget, private readonly text: ((b: Buffer) => string | null) | null = null) {}

  /** CopyInResponse: a COPY FROM STDIN of statement `statement` begins (binary: overall format 1). */
  copyIn(statement: number, binary: boolean): void {
    if (this.current) this.close(this.current); // its CopyDone or CopyFail was not seen
    const copy: UploadCopy = { statement, format: binary ? 'binary' : 'text', rows: 0, bytes: 0, data: binary ? '\\x' : '', truncated: false, end: null };
    const listed = this.record.copies.length < MAX_SETS;
    if (listed) this.record.copies.push(copy);
    else this.record.truncated = true;
    this.current = { copy, listed, decoder: binary ? null : new StringDecoder('utf8'), counter: binary ? new TupleCounter() : new LineCounter() };
  }

  /** A CopyData body the client sent: hashed in full, counted, and kept while the budget lasts. */
  uploaded(body: Buffer, statement: number): void {
    if (!this.current) this.copyIn(statement, false); // CopyData before the CopyInResponse was seen: text
    const c = this.current!;
    this.hash.update(body);
    this.record.messages++;
    this.record.bytes += body.length;
    c.copy.bytes += body.length;
    c.counter.feed(body);
    const rows = c.counter.rows;
    this.record.rows += rows - c.copy.rows;
    c.copy.rows = rows;
    if (c.copy.truncated) return;
    if (!c.listed || !this.budget.keep(body.length)) {
      c.copy.truncated = this.record.truncated = true;
      c.decoder = null;
      return;
    }
    if (this.text && c.copy.format === 'text') c.copy.data += this.text(body) ?? '\\x' + body.toString('hex');
    else c.copy.data += c.decoder ? c.decoder.write(body) : body.toString('hex');
  }

  /** CopyDone (`done`) or CopyFail (`failed`, with the client's message) ends the current COPY. */
  end(how: 'done' | 'failed', failure?: string): void {
    const c = this.current;
    if (!c) return;
    c.copy.end = how;
    if (failure !== undefined) c.copy.failure = failure;
    this.close(c);
    this.current = null;
  }

  finish(): StatementUpload {
    if (this.current) this.close(this.current);
    return { ...this.record, sha256: this.hash.digest('hex') };
  }

  /** Flushes a partial character still held by the decoder (the data ended in the middle of one). */
  private close(c: Upload): void {
    if (c.decoder) c.copy.data += c.decoder.end();
    c.decoder = null;
  }
}
