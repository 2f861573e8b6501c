/**
 * Per-statement accounting of what the client received and what it uploaded, for query.end:
 *
 * - returned data (`result`, here): command tags, rows, bytes, duration, each result set (columns,
 *   its command tag, the first `payloadLimit` bytes of decoded values across all sets), and the
 *   SHA-256 of every DataRow, COPY OUT CopyData and FunctionCallResponse message (type byte,
 *   length and body, exactly as sent to the client);
 * - `messages` (notices.ts): NoticeResponse and NotificationResponse messages sent to the client
 *   while the statement ran, kept decoded, with their own SHA-256 (so `result.sha256` still
 *   proves the data alone, comparable across runs, while notices with volatile text are proved
 *   apart);
 * - `upload` (upload.ts): what the client sent with COPY FROM STDIN (CopyData bodies), kept,
 *   counted and hashed.
 *
 * Kept rows, messages and uploads share one `payloadLimit` budget (budget.ts). Once something
 * does not fit, nothing more is kept, so each kept list is a prefix of what passed; counts and
 * hashes always cover everything.
 */
import { performance } from 'node:perf_hooks';
import type { ColumnContext, ResultSet, StatementEnd, StatementStart } from '../engine.js';
import { MAX_SETS, PayloadBudget } from './budget.js';
import type { FieldDescription } from './messages.js';
import { BodyReader, decodeDataRow } from './messages.js';
import { MessageLog, type StatementMessage, type StatementMessages } from './notices.js';
import { hex } from './params.js';
import { RangeHash } from './range-hash.js';
import { SQLSTATE_QUERY_CANCELED } from './sqlstate.js';
import { copyFailMessage, UploadLog, type StatementUpload } from './upload.js';

/** Command tags whose last number is the row count (INSERT oid n, UPDATE n, SELECT n, COPY n, ...). */
const ROW_COUNT_TAG = /^(SELECT|INSERT|UPDATE|DELETE|MERGE|COPY|FETCH|MOVE) (?:\d+ )?(\d+)$/;

/** Fields query.end gains over StatementEnd (engine.ts): present only when something happened. */
export interface StatementExtras {
  messages?: StatementMessages;
  upload?: StatementUpload;
}

/** What finish() returns: a StatementEnd, with `messages` and `upload` when there were any. */
export type StatementRecord = StatementEnd & StatementExtras;

/** Why a statement did not end `ok`, as StatementEnd.error holds it. */
type Cause = NonNullable<StatementEnd['error']>;

export class StatementRun {
  readonly start: StatementStart;
  /** Refused by the write-ahead hook: the upstream saw a poison message instead. */
  readonly refusal: Cause | null;
  /** Created once the write-ahead hook resolved, just before the bytes go upstream. */
  private readonly startedAt = performance.now();
  /** Every DataRow, COPY OUT CopyData and FunctionCallResponse message sent to the client. */
  private readonly hash = new RangeHash();
  private tags: string[] = [];
  private rowsFromTags = 0;
  private sawRowTag = false;
  private dataRows = 0;
  private bytes = 0;
  /** Result messages (DataRow, CopyData, FunctionCallResponse) sent so far: where a notice falls. */
  private resultMessages = 0;
  /** Values masked or scrubbed, by label (ColumnContext.tally). */
  private masked: Record<string, number> | null = null;
  /** Result sets as the client received them; `current` is the one rows go to, until its tag. */
  private readonly sets: ResultSet[] = [];
  private current: ResultSet | null = null;
  /** Result formats per column (0 text, 1 binary) of the current result set. */
  private formats: number[] = [];
  /** Shared with the messages and uploads. */
  private readonly budget: PayloadBudget;
  /** Some returned data (rows, COPY OUT data, function results) was not kept. */
  private truncated = false;
  private copyBinary = false;
  /** The FunctionCall's result format (true: binary), set by functionCall(). */
  private functionBinary = false;
  /** Notices and notifications: created by the first one. */
  private messages: MessageLog | null = null;
  /** COPY FROM STDIN uploads: created by the first copyIn() or uploaded(). */
  private uploads: UploadLog | null = null;
  private error: Cause | null = null;
  /** Set when the statement completed but its implicit transaction did not commit. */
  private rollback: Cause | null = null;
  /** Set when the gateway cannot know whether the statement ran or committed. */
  private unknownCause: Cause | null = null;
  /** A DO or CALL in its implicit transaction may have committed it (transaction control inside). */
  mayHaveCommitted = false;
  /** When the statement's last response arrived (finish may come later, at its Sync). */
  private completedAt: number | null = null;
  private ended = false;

  constructor(start: StatementStart, payloadLimit: number, refusal: Cause | null = null) {
    this.start = start;
    this.refusal = refusal;
    this.budget = new PayloadBudget(payloadLimit);
  }

  /** Counts values a transform or the scrubber changed (query.end's `masked`). */
  readonly tally = (label: string, n = 1): void => {
    const m = (this.masked ??= {});
    m[label] = (m[label] ?? 0) + n;
  };

  /** Per-value counts of transforms (ColumnContext.counter), folded into `masked` at the end. */
  private counters: { label: string; n: number }[] | null = null;

  readonly counter = (label: string): { n: number } => {
    const c = { label, n: 0 };
    (this.counters ??= []).push(c);
    return c;
  };

  /** What a plan's `columns` is told about the result set that starts now. */
  get columnContext(): ColumnContext {
    return { statement: this.tags.length, tally: this.tally, counter: this.counter };
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /**
   * Text values as the client reads them: null reads UTF-8; otherwise the session's client
   * encoding (encodings.ts), bytes not valid there kept as `\\x` hex rather than guessed.
   */
  clientText: ((b: Buffer) => string | null) | null = null;

  private text(b: Buffer): string {
    return this.clientText ? (this.clientText(b) ?? hex(b)) : b.toString('utf8');
  }

  /** A value as kept: binary as `\x` hex, text as the client reads it. */
  private value(v: Buffer, binary: boolean): string {
    return binary ? hex(v) : this.text(v);
  }

  /** Bytes of result values, messages and uploads kept for the record. */
  get keptSize(): number {
    return this.budget.keptSize;
  }

  /** Charges `size` kept bytes of returned data to the payload budget; if they do not fit, the
   *  result is truncated from now on. */
  private fits(size: number): boolean {
    if (this.budget.keep(size)) return true;
    this.truncated = true;
    return false;
  }

  /** One more result message (DataRow, CopyData, FunctionCallResponse); rows are DataRow and FunctionCallResponse. */
  private countResult(isRow: boolean): void {
    if (isRow) this.dataRows++;
    this.resultMessages++;
  }

  /** A RowDescription (or a Describe's description, or the Bind result formats) for the next rows. */
  describe(fields: FieldDescription[] | null, resultFormats?: number[]): void {
    if (fields) {
      this.openSet(fields.map((f) => f.name));
      // A statement's description says text for every column; the Bind's formats are the rows'.
      this.formats = resultFormats ?? fields.map((f) => f.format);
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
    this.countResult(true);
    this.streamed(buffer, start, end);
    if (this.truncated) return;
    const values = decodeDataRow(buffer.subarray(bodyStart, end));
    let size = 0;
    for (const v of values) size += v ? v.length : 0;
    if (!this.fits(size)) return;
    this.keptSet().rows.push(values.map((v, i) => (v === null ? null : this.value(v, this.formatOf(i) === 1))));
  }

  /** Kept data is full: later DataRow and CopyData messages are only counted and hashed. */
  get isTruncated(): boolean {
    return this.truncated || this.budget.isFull;
  }

  /**
   * A DataRow or CopyData passed on as it arrives, once the run is truncated (nothing of it is
   * kept): `begin` with its type when its first bytes go, then `streamed` for every piece.
   */
  beginStreamed(isDataRow: boolean): void {
    this.countResult(isDataRow);
    this.truncated = true;
  }

  streamed(buffer: Buffer, start: number, end: number): void {
    this.hash.add(buffer, start, end);
    this.bytes += end - start;
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
    this.countResult(false);
    this.streamed(buffer, start, end);
    if (this.truncated || !this.fits(end - bodyStart)) return;
    this.keptSet().rows.push([this.value(buffer.subarray(bodyStart, end), this.copyBinary)]);
  }

  /**
   * The statement is a fastpath FunctionCall: its result comes as one FunctionCallResponse,
   * kept as a one-row set with one column named `column` (the function's name), in the
   * FunctionCall's result format (binary: `\x` hex).
   */
  functionCall(column: string, binary: boolean): void {
    this.functionBinary = binary;
    this.openSet([column]);
  }

  /**
   * A FunctionCallResponse as sent to the client: buffer[start, end), its body from bodyStart
   * (Int32 length, -1 for NULL, then the value). Counted as a row, hashed with the result.
   */
  functionResult(buffer: Buffer, start: number, bodyStart: number, end: number): void {
    this.countResult(true);
    this.streamed(buffer, start, end);
    if (this.truncated) return;
    const r = new BodyReader(buffer.subarray(bodyStart, end), 'FunctionCallResponse');
    const len = r.int32();
    const value = len === -1 ? null : r.bytes(len);
    if (!this.fits(value ? value.length : 0)) return;
    const set = this.current ?? this.openSet(['result']);
    set.rows.push([value === null ? null : this.value(value, this.functionBinary)]);
  }

  /** A NoticeResponse (NOTICE, WARNING, INFO, ...) sent to the client: buffer[start, end), body from bodyStart. */
  notice(buffer: Buffer, start: number, bodyStart: number, end: number): void {
    this.message('notice', buffer, start, bodyStart, end);
  }

  /** A NotificationResponse sent to the client while the statement ran: buffer[start, end), body from bodyStart. */
  notification(buffer: Buffer, start: number, bodyStart: number, end: number): void {
    this.message('notification', buffer, start, bodyStart, end);
  }

  private message(kind: StatementMessage['kind'], buffer: Buffer, start: number, bodyStart: number, end: number): void {
    if (this.ended) return;
    this.messages ??= new MessageLog(this.budget);
    this.messages.add(kind, buffer, start, bodyStart, end, { statement: this.tags.length, after: this.resultMessages });
  }

  /** CopyInResponse: a COPY FROM STDIN begins; the client's CopyData follow (overall format 0 text, 1 binary). */
  copyIn(binary: boolean): void {
    this.uploadLog().copyIn(this.tags.length, binary);
  }

  /**
   * A CopyData the client sent during COPY FROM STDIN, as it goes upstream: buffer[start, end),
   * its body (the data) from bodyStart. Hashed in full, counted, and kept while the budget lasts.
   */
  uploaded(buffer: Buffer, _start: number, bodyStart: number, end: number): void {
    if (this.ended) return; // the server ended the COPY (an error) while the client still sent
    this.uploadLog().uploaded(buffer.subarray(bodyStart, end), this.tags.length);
  }

  /** CopyDone from the client: the upload is complete. */
  copyDone(): void {
    if (this.ended) return;
    this.uploadLog().end('done');
  }

  /** CopyFail from the client: it aborted the upload; its message (body from bodyStart) is kept,
   *  shortened as copyFailMessage() says. */
  copyFail(buffer: Buffer, _start: number, bodyStart: number, end: number): void {
    if (this.ended) return;
    const failure = copyFailMessage(buffer.subarray(bodyStart, end));
    this.uploadLog().end('failed', failure);
  }

  private uploadLog(): UploadLog {
    return (this.uploads ??= new UploadLog(this.budget, this.clientText));
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

  /** An error (the server's, a refusal, a cut) ended it. */
  get failed(): boolean {
    return this.error !== null;
  }

  fail(error: Cause): void {
    if (!this.error) this.error = error;
    this.current = null;
  }

  /** The statement's responses are all in; its duration ends here even if finish() waits. */
  complete(): void {
    this.completedAt ??= performance.now();
  }

  /** The statement completed, but the implicit transaction it ran in was rolled back: `cause` says why. */
  rolledBack(cause: Cause): void {
    if (this.mayHaveCommitted) {
      this.unknown({ code: cause.code, message: `its implicit transaction failed (${cause.message}), but a DO or CALL in it may have committed it first` });
      return;
    }
    this.rollback ??= { code: cause.code, message: `rolled back with its implicit transaction: ${cause.message}` };
  }

  /** Whether it ran, or committed, cannot be known (the session ended before the server said). */
  unknown(cause: Cause): void {
    this.unknownCause ??= cause;
  }

  finish(): StatementRecord {
    this.ended = true;
    const outcome: StatementEnd['outcome'] = this.refusal
      ? this.refusal.code === SQLSTATE_QUERY_CANCELED ? 'cancelled' : 'refused'
      : this.unknownCause && !this.error ? 'unknown'
      : this.error
        ? this.error.code === SQLSTATE_QUERY_CANCELED ? 'cancelled' : 'error'
        : this.rollback ? 'rolled_back' : 'ok';
    const end: StatementRecord = {
      queryId: this.start.queryId,
      outcome,
      error: this.refusal ?? this.error ?? this.unknownCause ?? this.rollback,
      commandTags: this.tags,
      rows: this.sawRowTag ? this.rowsFromTags : this.dataRows,
      bytes: this.bytes,
      durationMs: Math.round(((this.completedAt ?? performance.now()) - this.startedAt) * 1000) / 1000,
      result: { sets: this.sets, truncated: this.truncated, sha256: this.hash.digest() },
    };
    if (this.messages) end.messages = this.messages.finish();
    if (this.uploads) end.upload = this.uploads.finish();
    for (const c of this.counters ?? []) {
      if (c.n > 0) this.tally(c.label, c.n);
      c.n = 0;
    }
    if (this.masked) end.masked = this.masked;
    return end;
  }
}
