/**
 * Per-statement accounting of what came back to the client: command tags, rows, bytes, duration,
 * each result set (columns, its command tag, the first `payloadLimit` bytes of decoded values
 * across all sets), and the SHA-256 of every DataRow and COPY OUT CopyData message (type byte,
 * length and body, exactly as sent to the client).
 */
import { createHash, type Hash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { ResultSet, StatementEnd, StatementStart } from '../engine.js';
import type { FieldDescription } from './messages.js';
import { decodeDataRow } from './messages.js';
import { SQLSTATE_QUERY_CANCELED } from './sqlstate.js';

/** Command tags whose last number is the row count (INSERT oid n, UPDATE n, SELECT n, COPY n, ...). */
const ROW_COUNT_TAG = /^(SELECT|INSERT|UPDATE|DELETE|MERGE|COPY|FETCH|MOVE) (?:\d+ )?(\d+)$/;
/** Result sets kept per statement (a Query may hold thousands of statements); later ones count as truncated. */
const MAX_SETS = 1000;

export class StatementRun {
  readonly start: StatementStart;
  /** Refused by the write-ahead hook: the upstream saw a poison message instead. */
  readonly refusal: { code: string; message: string } | null;
  /** Created once the write-ahead hook resolved, just before the bytes go upstream. */
  private readonly startedAt = performance.now();
  private readonly hash: Hash = createHash('sha256');
  /** Hashed bytes not yet fed to `hash`: buffer[hashStart, hashEnd). Adjacent messages of one
   *  received chunk extend the range, so a run of rows costs one update, not one per message. */
  private hashBuffer: Buffer | null = null;
  private hashStart = 0;
  private hashEnd = 0;
  private tags: string[] = [];
  private rowsFromTags = 0;
  private sawRowTag = false;
  private dataRows = 0;
  private bytes = 0;
  /** Result sets as the client received them; `current` is the one rows go to, until its tag. */
  private readonly sets: ResultSet[] = [];
  private current: ResultSet | null = null;
  /** Result formats per column (0 text, 1 binary) of the current result set. */
  private formats: number[] = [];
  private keptBytes = 0;
  private truncated = false;
  private copyBinary = false;
  private error: { code: string; message: string } | null = null;
  /** Set when the statement completed but its implicit transaction did not commit. */
  private rollback: { code: string; message: string } | null = null;
  /** Set when the gateway cannot know whether the statement ran or committed. */
  private unknownCause: { code: string; message: string } | null = null;
  /** A DO or CALL in its implicit transaction may have committed it (transaction control inside). */
  mayHaveCommitted = false;
  /** When the statement's last response arrived (finish may come later, at its Sync). */
  private completedAt: number | null = null;
  private ended = false;

  constructor(start: StatementStart, private readonly payloadLimit: number, refusal: { code: string; message: string } | null = null) {
    this.start = start;
    this.refusal = refusal;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Bytes of result values kept for the record. */
  get keptSize(): number {
    return this.keptBytes;
  }

  /** A RowDescription (or a Describe's description, or the Bind result formats) for the next rows. */
  describe(fields: FieldDescription[] | null, resultFormats?: number[]): void {
    if (fields) {
      this.openSet(fields.map((f) => f.name));
      this.formats = fields.map((f) => f.format);
    } else if (resultFormats) {
      this.formats = resultFormats;
    }
  }

  /** A new result set begins (RowDescription, CopyOutResponse, or rows of an undescribed portal). */
  private openSet(columns: string[]): ResultSet {
    const set: ResultSet = { columns, rows: [], tag: null, statement: this.tags.length };
    this.current = set;
    if (this.sets.length < MAX_SETS) this.sets.push(set);
    else this.truncated = true;
    return set;
  }

  /** Where kept rows go: the open set, or a new one without column names. */
  private keptSet(): ResultSet {
    return this.current ?? this.openSet([]);
  }

  /** A DataRow message as sent to the client: buffer[start, end), its body from bodyStart. */
  dataRow(buffer: Buffer, start: number, bodyStart: number, end: number): void {
    this.hashRange(buffer, start, end);
    this.bytes += end - start;
    this.dataRows++;
    if (this.truncated) return;
    const values = decodeDataRow(buffer.subarray(bodyStart, end));
    let size = 0;
    for (const v of values) size += v ? v.length : 0;
    if (this.keptBytes + size > this.payloadLimit) {
      this.truncated = true;
      return;
    }
    this.keptBytes += size;
    this.keptSet().rows.push(values.map((v, i) => (v === null ? null : this.formatOf(i) === 1 ? '\\x' + v.toString('hex') : v.toString('utf8'))));
  }

  /** Kept rows are full: later DataRow and CopyData messages are only counted and hashed. */
  get isTruncated(): boolean {
    return this.truncated;
  }

  /**
   * A DataRow or CopyData passed on as it arrives, once the run is truncated (nothing of it is
   * kept): `begin` with its type when its first bytes go, then `streamed` for every piece.
   */
  beginStreamed(isDataRow: boolean): void {
    if (isDataRow) this.dataRows++;
  }

  streamed(buffer: Buffer, start: number, end: number): void {
    this.hashRange(buffer, start, end);
    this.bytes += end - start;
  }

  /** Extends the pending hash range when adjacent, else hashes the pending one and starts anew. */
  private hashRange(buffer: Buffer, start: number, end: number): void {
    if (buffer === this.hashBuffer && start === this.hashEnd) {
      this.hashEnd = end;
      return;
    }
    this.flushHash();
    this.hashBuffer = buffer;
    this.hashStart = start;
    this.hashEnd = end;
  }

  private flushHash(): void {
    if (this.hashBuffer && this.hashEnd > this.hashStart) this.hash.update(this.hashBuffer.subarray(this.hashStart, this.hashEnd));
    this.hashBuffer = null;
    this.hashStart = this.hashEnd = 0;
  }

  private formatOf(i: number): number {
    if (this.formats.length === 1) return this.formats[0]!;
    return this.formats[i] ?? 0;
  }

  /** CopyOutResponse: overall format 0 text, 1 binary. */
  copyOut(binary: boolean): void {
    this.copyBinary = binary;
    this.openSet(['copy']);
  }

  /** A COPY OUT CopyData message as sent to the client: buffer[start, end), its body from bodyStart. */
  copyData(buffer: Buffer, start: number, bodyStart: number, end: number): void {
    this.hashRange(buffer, start, end);
    this.bytes += end - start;
    if (this.truncated) return;
    const size = end - bodyStart;
    if (this.keptBytes + size > this.payloadLimit) {
      this.truncated = true;
      return;
    }
    this.keptBytes += size;
    const body = buffer.subarray(bodyStart, end);
    this.keptSet().rows.push([this.copyBinary ? '\\x' + body.toString('hex') : body.toString('utf8')]);
  }

  commandComplete(tag: string): void {
    this.tags.push(tag);
    if (this.current) this.current.tag = tag;
    this.current = null;
    const m = ROW_COUNT_TAG.exec(tag);
    if (m) {
      this.sawRowTag = true;
      this.rowsFromTags += Number(m[2]);
    }
  }

  fail(error: { code: string; message: string }): void {
    if (!this.error) this.error = error;
    this.current = null;
  }

  /** The statement's responses are all in; its duration ends here even if finish() waits. */
  complete(): void {
    this.completedAt ??= performance.now();
  }

  /** The statement completed, but the implicit transaction it ran in was rolled back: `cause` says why. */
  rolledBack(cause: { code: string; message: string }): void {
    if (this.mayHaveCommitted) {
      this.unknown({ code: cause.code, message: `its implicit transaction failed (${cause.message}), but a DO or CALL in it may have committed it first` });
      return;
    }
    this.rollback ??= { code: cause.code, message: `rolled back with its implicit transaction: ${cause.message}` };
  }

  /** Whether it ran, or committed, cannot be known (the session ended before the server said). */
  unknown(cause: { code: string; message: string }): void {
    this.unknownCause ??= cause;
  }

  finish(): StatementEnd {
    this.ended = true;
    this.flushHash();
    const outcome: StatementEnd['outcome'] = this.refusal
      ? 'refused'
      : this.unknownCause && !this.error ? 'unknown'
      : this.error
        ? this.error.code === SQLSTATE_QUERY_CANCELED ? 'cancelled' : 'error'
        : this.rollback ? 'rolled_back' : 'ok';
    return {
      queryId: this.start.queryId,
      outcome,
      error: this.refusal ?? this.error ?? this.unknownCause ?? this.rollback,
      commandTags: this.tags,
      rows: this.sawRowTag ? this.rowsFromTags : this.dataRows,
      bytes: this.bytes,
      durationMs: Math.round(((this.completedAt ?? performance.now()) - this.startedAt) * 1000) / 1000,
      result: { sets: this.sets, truncated: this.truncated, sha256: this.hash.digest('hex') },
    };
  }
}
