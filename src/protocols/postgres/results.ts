/**
 * Per-statement accounting of what the client received and what it uploaded, for query.end:
 *
 * - returned data (`result`): command tags, rows, bytes, duration, each result set (columns, its
 *   command tag, the first `payloadLimit` bytes of decoded values across all sets), and the
 *   SHA-256 of every DataRow, COPY OUT CopyData and FunctionCallResponse message (type byte,
 *   length and body, exactly as sent to the client);
 * - `messages`: NoticeResponse and NotificationResponse messages sent to the client while the
 *   statement ran, kept decoded, with their own SHA-256 (so `result.sha256` still proves the data
 *   alone, comparable across runs, while notices with volatile text are proved apart);
 * - `upload`: what the client sent with COPY FROM STDIN (CopyData bodies), kept, counted and hashed.
 *
 * Kept rows, messages and uploads share one `payloadLimit` budget. Once something does not fit,
 * nothing more is kept, so each kept list is a prefix of what passed; counts and hashes always
 * cover everything.
 */
import { createHash, type Hash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import type { ResultSet, StatementEnd, StatementStart } from '../engine.js';
import type { FieldDescription } from './messages.js';
import { BodyReader, decodeDataRow, decodeNoticeFields } from './messages.js';
import { SQLSTATE_QUERY_CANCELED } from './sqlstate.js';

/** Command tags whose last number is the row count (INSERT oid n, UPDATE n, SELECT n, COPY n, ...). */
const ROW_COUNT_TAG = /^(SELECT|INSERT|UPDATE|DELETE|MERGE|COPY|FETCH|MOVE) (?:\d+ )?(\d+)$/;
/** Result sets (and COPY uploads) kept per statement (a Query may hold thousands of statements);
 *  later ones count as truncated. */
const MAX_SETS = 1000;
/** Characters of a CopyFail message kept. */
const MAX_FAILURE = 1000;

/**
 * A NoticeResponse or NotificationResponse the client received while the statement ran.
 * `statement`: index of the statement it came under (commands completed before it), as in
 * ResultSet; `after`: result messages (rows, COPY data, function results) the client had
 * received before it in this run, so that it can be placed among the rows.
 */
export type StatementMessage =
  | ({ kind: 'notice'; statement: number; after: number } & NoticeRecord)
  | ({ kind: 'notification'; statement: number; after: number } & NotificationRecord);

/** A NoticeResponse as kept: `severity` is the non-localized one (V) where the server sent it. */
export interface NoticeRecord { severity: string; code: string; message: string; detail?: string; hint?: string }

/** A NotificationResponse: `pid` is the notifying backend's (upstream) process id. */
export interface NotificationRecord { pid: number; channel: string; payload: string }

/** Notices and notifications sent to the client under the statement (StatementEnd.messages). */
export interface StatementMessages {
  notices: number;
  notifications: number;
  /** Bytes of those messages (type, length, body). */
  bytes: number;
  /** In the order sent, while the payload budget lasted. */
  kept: StatementMessage[];
  /** Some were not kept (payload limit). */
  truncated: boolean;
  /** SHA-256 over every NoticeResponse and NotificationResponse message (type byte, length and
   *  body, exactly as sent to the client), in order, including those not kept. */
  sha256: string;
}

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

/** Fields query.end gains over StatementEnd (engine.ts): present only when something happened. */
export interface StatementExtras {
  messages?: StatementMessages;
  upload?: StatementUpload;
}

/** What finish() returns: a StatementEnd, with `messages` and `upload` when there were any. */
export type StatementRecord = StatementEnd & StatementExtras;

/** NotificationResponse body: Int32 pid, String channel, String payload. */
export function decodeNotification(body: Buffer): NotificationRecord {
  const r = new BodyReader(body, 'NotificationResponse');
  return { pid: r.int32(), channel: r.cstring(), payload: r.cstring() };
}

/** NoticeResponse body, as kept in the record: severity, code, message, detail and hint. */
export function decodeNotice(body: Buffer): NoticeRecord {
  const f = decodeNoticeFields(body);
  const out: NoticeRecord = { severity: f.V ?? f.S ?? 'NOTICE', code: f.C ?? '00000', message: f.M ?? '' };
  if (f.D !== undefined) out.detail = f.D;
  if (f.H !== undefined) out.hint = f.H;
  return out;
}

/**
 * A NotificationResponse that arrived while no statement ran (LISTEN in an idle session), for a
 * record of its own: the notification, and the SHA-256 and size of the message as sent to the
 * client. buffer[start, end) is the message, its body from bodyStart.
 */
export function notificationRecord(buffer: Buffer, start: number, bodyStart: number, end: number): NotificationRecord & { bytes: number; sha256: string } {
  return {
    ...decodeNotification(buffer.subarray(bodyStart, end)),
    bytes: end - start,
    sha256: createHash('sha256').update(buffer.subarray(start, end)).digest('hex'),
  };
}

/**
 * SHA-256 over byte ranges of received chunks. Adjacent ranges of one chunk extend the pending
 * range, so a run of messages costs one `update`, not one per message.
 */
class RangeHash {
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

/** Counts text COPY rows: newlines, leaving out the `\.` end-of-data line. */
class LineCounter {
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
class TupleCounter {
  tuples = 0;
  private state = Binary.Header;
  /** Header bytes read, or bytes of the integer being read. */
  private got = 0;
  private acc = 0;
  private skip = 0;
  private fields = 0;

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
  lines: LineCounter | null;
  tuples: TupleCounter | null;
}

export class StatementRun {
  readonly start: StatementStart;
  /** Refused by the write-ahead hook: the upstream saw a poison message instead. */
  readonly refusal: { code: string; message: string } | null;
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
  /** Result sets as the client received them; `current` is the one rows go to, until its tag. */
  private readonly sets: ResultSet[] = [];
  private current: ResultSet | null = null;
  /** Result formats per column (0 text, 1 binary) of the current result set. */
  private formats: number[] = [];
  private keptBytes = 0;
  /** The payload budget refused something: from here on nothing more is kept (rows, messages,
   *  uploads), so that each kept list is a prefix of what passed. */
  private full = false;
  /** Some returned data (rows, COPY OUT data, function results) was not kept. */
  private truncated = false;
  private copyBinary = false;
  /** The FunctionCall's result format (true: binary), set by functionCall(). */
  private functionBinary = false;
  /** Notices and notifications: created by the first one. */
  private messages: { record: StatementMessages; hash: RangeHash } | null = null;
  /** COPY FROM STDIN uploads: created by the first copyIn() or uploaded(). */
  private uploads: { record: StatementUpload; hash: Hash; current: Upload | null } | null = null;
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

  /**
   * Text values as the client reads them: in the session's client encoding (encodings.ts); bytes
   * that are not valid there are kept as `\\x` hex rather than guessed.
   */
  decodeText: (b: Buffer) => string | null = (b) => b.toString('utf8');

  private text(b: Buffer): string {
    return this.decodeText(b) ?? '\\x' + b.toString('hex');
  }

  /** Bytes of result values, messages and uploads kept for the record. */
  get keptSize(): number {
    return this.keptBytes;
  }

  /** Charges `size` kept bytes to the payload budget; false (and full from now on) if it does not fit. */
  private keep(size: number): boolean {
    if (this.full) return false;
    if (this.keptBytes + size > this.payloadLimit) {
      this.full = true;
      return false;
    }
    this.keptBytes += size;
    return true;
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
    this.hash.add(buffer, start, end);
    this.bytes += end - start;
    this.dataRows++;
    this.resultMessages++;
    if (this.truncated) return;
    const values = decodeDataRow(buffer.subarray(bodyStart, end));
    let size = 0;
    for (const v of values) size += v ? v.length : 0;
    if (!this.keep(size)) {
      this.truncated = true;
      return;
    }
    this.keptSet().rows.push(values.map((v, i) => (v === null ? null : this.formatOf(i) === 1 ? '\\x' + v.toString('hex') : this.text(v))));
  }

  /** Kept data is full: later DataRow and CopyData messages are only counted and hashed. */
  get isTruncated(): boolean {
    return this.truncated || this.full;
  }

  /**
   * A DataRow or CopyData passed on as it arrives, once the run is truncated (nothing of it is
   * kept): `begin` with its type when its first bytes go, then `streamed` for every piece.
   */
  beginStreamed(isDataRow: boolean): void {
    if (isDataRow) this.dataRows++;
    this.resultMessages++;
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
    this.hash.add(buffer, start, end);
    this.bytes += end - start;
    this.resultMessages++;
    if (this.truncated) return;
    if (!this.keep(end - bodyStart)) {
      this.truncated = true;
      return;
    }
    const body = buffer.subarray(bodyStart, end);
    this.keptSet().rows.push([this.copyBinary ? '\\x' + body.toString('hex') : this.text(body)]);
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
    this.hash.add(buffer, start, end);
    this.bytes += end - start;
    this.dataRows++;
    this.resultMessages++;
    if (this.truncated) return;
    const r = new BodyReader(buffer.subarray(bodyStart, end), 'FunctionCallResponse');
    const len = r.int32();
    const value = len === -1 ? null : r.bytes(len);
    if (!this.keep(value ? value.length : 0)) {
      this.truncated = true;
      return;
    }
    const set = this.current ?? this.openSet(['result']);
    set.rows.push([value === null ? null : this.functionBinary ? '\\x' + value.toString('hex') : this.text(value)]);
  }

  /** A NoticeResponse (NOTICE, WARNING, INFO, ...) sent to the client: buffer[start, end), body from bodyStart. */
  notice(buffer: Buffer, start: number, bodyStart: number, end: number): void {
    if (this.ended) return;
    const m = this.message(buffer, start, end);
    m.notices++;
    if (m.truncated) return;
    if (!this.keep(end - bodyStart)) {
      m.truncated = true;
      return;
    }
    m.kept.push({ kind: 'notice', statement: this.tags.length, after: this.resultMessages, ...decodeNotice(buffer.subarray(bodyStart, end)) });
  }

  /** A NotificationResponse sent to the client while the statement ran: buffer[start, end), body from bodyStart. */
  notification(buffer: Buffer, start: number, bodyStart: number, end: number): void {
    if (this.ended) return;
    const m = this.message(buffer, start, end);
    m.notifications++;
    if (m.truncated) return;
    if (!this.keep(end - bodyStart)) {
      m.truncated = true;
      return;
    }
    m.kept.push({ kind: 'notification', statement: this.tags.length, after: this.resultMessages, ...decodeNotification(buffer.subarray(bodyStart, end)) });
  }

  private message(buffer: Buffer, start: number, end: number): StatementMessages {
    this.messages ??= { record: { notices: 0, notifications: 0, bytes: 0, kept: [], truncated: false, sha256: '' }, hash: new RangeHash() };
    this.messages.hash.add(buffer, start, end);
    this.messages.record.bytes += end - start;
    return this.messages.record;
  }

  /** CopyInResponse: a COPY FROM STDIN begins; the client's CopyData follow (overall format 0 text, 1 binary). */
  copyIn(binary: boolean): void {
    const u = this.uploadState();
    if (u.current) this.closeUpload(u.current); // its CopyDone or CopyFail was not seen
    const copy: UploadCopy = { statement: this.tags.length, format: binary ? 'binary' : 'text', rows: 0, bytes: 0, data: binary ? '\\x' : '', truncated: false, end: null };
    const listed = u.record.copies.length < MAX_SETS;
    if (listed) u.record.copies.push(copy);
    else u.record.truncated = true;
    u.current = { copy, listed, decoder: binary ? null : new StringDecoder('utf8'), lines: binary ? null : new LineCounter(), tuples: binary ? new TupleCounter() : null };
  }

  /**
   * A CopyData the client sent during COPY FROM STDIN, as it goes upstream: buffer[start, end),
   * its body (the data) from bodyStart. Hashed in full, counted, and kept while the budget lasts.
   */
  uploaded(buffer: Buffer, _start: number, bodyStart: number, end: number): void {
    if (this.ended) return; // the server ended the COPY (an error) while the client still sent
    const u = this.uploadState();
    if (!u.current) this.copyIn(false); // CopyData before the CopyInResponse was seen: text
    const c = u.current!;
    const body = buffer.subarray(bodyStart, end);
    u.hash.update(body);
    u.record.messages++;
    u.record.bytes += body.length;
    c.copy.bytes += body.length;
    if (c.lines) c.lines.feed(body);
    else c.tuples!.feed(body);
    const rows = c.lines ? c.lines.rows : c.tuples!.tuples;
    u.record.rows += rows - c.copy.rows;
    c.copy.rows = rows;
    if (c.copy.truncated) return;
    if (!c.listed || !this.keep(body.length)) {
      c.copy.truncated = u.record.truncated = true;
      c.decoder = null;
      return;
    }
    c.copy.data += c.decoder ? c.decoder.write(body) : body.toString('hex');
  }

  /** CopyDone from the client: the upload is complete. */
  copyDone(): void {
    if (this.ended) return;
    this.endUpload('done');
  }

  /** CopyFail from the client: it aborted the upload; its message (body from bodyStart) is kept,
   *  its first MAX_FAILURE characters (a client frame may be 64 MiB; the budget is for data). */
  copyFail(buffer: Buffer, _start: number, bodyStart: number, end: number): void {
    if (this.ended) return;
    const message = new BodyReader(buffer.subarray(bodyStart, end), 'CopyFail').cstring();
    this.endUpload('failed', message.length > MAX_FAILURE ? `${message.slice(0, MAX_FAILURE)}…` : message);
  }

  private endUpload(how: 'done' | 'failed', failure?: string): void {
    const c = this.uploadState().current;
    if (!c) return;
    c.copy.end = how;
    if (failure !== undefined) c.copy.failure = failure;
    this.closeUpload(c);
    this.uploads!.current = null;
  }

  /** Flushes a partial character still held by the decoder (the data ended in the middle of one). */
  private closeUpload(c: Upload): void {
    if (c.decoder) c.copy.data += c.decoder.end();
    c.decoder = null;
  }

  private uploadState(): NonNullable<StatementRun['uploads']> {
    return (this.uploads ??= { record: { messages: 0, bytes: 0, rows: 0, sha256: '', truncated: false, copies: [] }, hash: createHash('sha256'), current: null });
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

  finish(): StatementRecord {
    this.ended = true;
    const outcome: StatementEnd['outcome'] = this.refusal
      ? 'refused'
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
    if (this.messages) end.messages = { ...this.messages.record, sha256: this.messages.hash.digest() };
    if (this.uploads) {
      if (this.uploads.current) this.closeUpload(this.uploads.current);
      end.upload = { ...this.uploads.record, sha256: this.uploads.hash.digest('hex') };
    }
    return end;
  }
}
