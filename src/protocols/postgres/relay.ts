/**
 * upstream -> client: relays each received chunk in one write where possible, accounts every
 * backend message to the statement it answers (responses.ts), applies the plan's column
 * transforms and row cap, and lets the session put its own messages (a NOTICE for a held
 * statement, a FATAL) between backend messages, never inside one.
 *
 * A DataRow or CopyData that nothing needs whole (its statement keeps no more rows and has no
 * transform or cap) is passed on as its bytes arrive, split across chunks: neither the chunk nor
 * the message is copied to join the pieces, and a huge row is never buffered.
 */
import type { Duplex } from 'node:stream';
import { FrameReader, type Frame } from './framing.js';
import { drained, write } from './io.js';
import {
  BodyReader,
  MessageType,
  decodeCommandComplete,
  decodeNoticeFields,
  decodeParameterDescription,
  decodeParameterStatus,
  decodeReadyForQuery,
  decodeRowDescription,
  errorResponse,
} from './messages.js';
import { refusalResponse } from './poison.js';
import { describedColumns, type Failure, type ResponseQueue, type Running } from './responses.js';
import { anyTransform, copyFormatIsPlain, transformCopyBinary, transformCopyText, transformDataRow, unknownColumns } from './transform.js';

/** Upstream frames are trusted more than client ones, but still bounded (PostgreSQL's own 1 GB field limit). */
const UPSTREAM_MAX_FRAME = 1024 * 1024 * 1024 + 1024;
const EMPTY = Buffer.alloc(0);
/** program_limit_exceeded: a result cut off by the plan's row cap. */
const SQLSTATE_ROW_CAP = '54000';

export interface RelayHost {
  /** A ParameterStatus: false to drop it (the session is ending on it). */
  parameterStatus(name: string, value: string): boolean;
  /** An upstream FATAL/PANIC: kept as the session's end error. */
  upstreamFatal(message: string): void;
  /** Cancel the statement running upstream (a row cap cut its result off). */
  cancelUpstream(): void;
  /** A message that belongs to no statement (a notification while idle). */
  unattributed(buf: Buffer, f: Frame): void;
}

export class Relay {
  private readonly reader = new FrameReader({ maxFrameBytes: UPSTREAM_MAX_FRAME, peer: 'upstream' });
  /** Bytes still to come of the DataRow/CopyData being passed on as it arrives, and its run. */
  private streaming = 0;
  private streamRun: Running | null = null;
  /** Messages of the session's own, waiting for the current backend message to be whole. */
  private readonly atBoundary: (() => void)[] = [];
  /** After a cut-off result: what upstream still sends up to the next ReadyForQuery is accounted, not relayed. */
  private draining = false;
  /** The client was told the session ended: what upstream still sends is accounted, never relayed. */
  private silenced = false;

  constructor(private readonly client: Duplex, private readonly queue: ResponseQueue, private readonly host: RelayHost) {}

  get atMessageBoundary(): boolean {
    return this.streaming === 0;
  }

  /** Runs `fn` when the client stream is at a message boundary (now, unless a row is mid-way). */
  whenAtBoundary(fn: () => void): void {
    if (this.streaming === 0) fn();
    else this.atBoundary.push(fn);
  }

  /** From now on nothing more reaches the client; statement ends are still accounted. */
  silence(): void {
    this.silenced = true;
  }

  /** Sends one message of the session's own to the client, between backend messages. */
  inject(message: Buffer): void {
    this.whenAtBoundary(() => write(this.client, message));
  }

  relayChunk(chunk: Buffer): void | Promise<void> {
    // `lead` bytes at the chunk's start finish a message already being streamed.
    const lead = Math.min(this.streaming, chunk.length);
    if (lead > 0) {
      this.streaming -= lead;
      this.streamRun?.run.streamed(chunk, 0, lead);
    }
    const batch = lead < chunk.length ? this.reader.push(lead > 0 ? chunk.subarray(lead) : chunk) : { buffer: EMPTY, frames: [] };
    // With a lead, the reader held nothing, so batch.buffer is chunk[lead..]: write from the chunk.
    const out = lead > 0 ? chunk : batch.buffer;
    const shift = lead > 0 ? lead : 0;
    const buf = batch.buffer;
    let runStart = lead > 0 ? 0 : (batch.frames[0]?.start ?? 0);
    let end = lead;
    if (lead > 0 && this.streaming === 0 && this.atBoundary.length > 0) {
      write(this.client, out.subarray(0, lead));
      runStart = lead;
      this.flushBoundary();
    }
    for (const f of batch.frames) {
      end = f.end + shift;
      const replacement = this.onBackend(buf, f);
      if (replacement === undefined) continue;
      write(this.client, out.subarray(runStart, f.start + shift));
      if (replacement) write(this.client, replacement);
      runStart = end;
    }
    if (batch.frames.length === 0 && lead === 0) end = runStart;
    const tail = this.reader.pendingFrame;
    if (tail && !this.draining && !this.silenced && this.streamable(tail.type)) {
      this.reader.dropPendingFrame();
      this.streaming = tail.total - (out.length - end);
      this.streamRun?.run.beginStreamed(tail.type === MessageType.DataRow);
      this.streamRun?.run.streamed(out, end, out.length);
      end = out.length;
    }
    write(this.client, out.subarray(runStart, end));
    if (this.streaming === 0) this.flushBoundary();
    return drained(this.client);
  }

  private flushBoundary(): void {
    for (const fn of this.atBoundary.splice(0)) fn();
  }

  /** Whether an incomplete message of `type` can go on before it is whole: sets its run. */
  private streamable(type: number): boolean {
    if (type !== MessageType.DataRow && type !== MessageType.CopyData) return false;
    const s = this.queue.current();
    if (s && (!s.run.isTruncated || s.transforms || s.plan.action !== 'run' || s.plan.rowCap !== undefined)) return false;
    this.streamRun = s;
    return true;
  }

  /**
   * Accounts one backend message. Returns undefined to pass it, a Buffer to send instead, null to
   * drop it. DataRow and CopyData (nearly every message of a big result) are accounted by offsets
   * into the received chunk: no slice, no copy.
   */
  private onBackend(buf: Buffer, f: Frame): Buffer | null | undefined {
    const type = f.type;
    if (type === MessageType.DataRow || type === MessageType.CopyData) {
      const s = this.queue.current();
      if (this.draining || this.silenced) return null;
      if (!s) return undefined;
      return type === MessageType.DataRow ? this.dataRow(s, buf, f) : this.copyData(s, buf, f);
    }
    const body = buf.subarray(f.bodyStart, f.end);
    const draining = this.draining; // a message that starts the drain still goes (with its error)
    const relayed = this.account(type, body, buf, f);
    if (this.silenced) return null;
    if (draining) {
      if (type !== MessageType.ReadyForQuery) return null;
      this.draining = false;
    }
    return relayed;
  }

  private account(type: number, body: Buffer, buf: Buffer, f: Frame): Buffer | null | undefined {
    const queue = this.queue;
    switch (type) {
      case MessageType.CopyOutResponse:
        return this.copyOutResponse(body, buf.subarray(f.start, f.end));
      case MessageType.CopyInResponse:
        queue.copyInResponse();
        queue.current()?.run.copyIn(body[0] === 1);
        return undefined;
      case MessageType.FunctionCallResponse:
        queue.current()?.run.functionResult(buf, f.start, f.bodyStart, f.end);
        return undefined;
      case MessageType.RowDescription: {
        const fields = decodeRowDescription(body);
        if (queue.rowDescription(fields) === 'statement') {
          const s = queue.current()!;
          s.run.describe(fields);
          describedColumns(s, fields);
        }
        return undefined;
      }
      case MessageType.ParameterDescription:
        queue.parameterDescription(decodeParameterDescription(body));
        return undefined;
      case MessageType.NoData:
      case MessageType.ParseComplete:
      case MessageType.BindComplete:
      case MessageType.CloseComplete:
        queue.completed();
        return undefined;
      case MessageType.CommandComplete:
        queue.commandComplete(decodeCommandComplete(body).tag);
        return undefined;
      case MessageType.EmptyQueryResponse:
      case MessageType.PortalSuspended:
        queue.executeEnded();
        return undefined;
      case MessageType.ErrorResponse: {
        const fields = decodeNoticeFields(body);
        const error = { code: fields.C ?? 'XX000', message: fields.M ?? 'error' };
        if (fields.V === 'FATAL' || fields.V === 'PANIC' || fields.S === 'FATAL' || fields.S === 'PANIC') this.host.upstreamFatal(error.message);
        const refusal = queue.error(error);
        return refusal ? refusalResponse(refusal) : undefined;
      }
      case MessageType.ReadyForQuery:
        queue.readyForQuery(decodeReadyForQuery(body));
        return undefined;
      case MessageType.BackendKeyData:
        return null; // upstream's key must never reach the client
      case MessageType.ParameterStatus: {
        const p = decodeParameterStatus(body);
        queue.parameterStatus(p.name, p.value);
        return this.host.parameterStatus(p.name, p.value) ? undefined : null;
      }
      case MessageType.NotificationResponse:
      case MessageType.NoticeResponse: {
        // A notice during a Parse or Bind recorded on its own belongs to that record.
        const run = queue.messageTarget();
        if (!run) this.host.unattributed(buf, f);
        else if (type === MessageType.NoticeResponse) run.notice(buf, f.start, f.bodyStart, f.end);
        else run.notification(buf, f.start, f.bodyStart, f.end);
        return undefined;
      }
      default:
        return undefined; // CopyDone, ...
    }
  }

  private dataRow(s: Running, buf: Buffer, f: Frame): Buffer | null | undefined {
    const over = this.overCap(s);
    if (over) return over;
    if (s.transforms === null && s.plan.action === 'run' && s.plan.columns) {
      // Rows of a portal described nowhere: the plan decides on columns it cannot name.
      s.transforms = s.plan.columns(unknownColumns(buf.readInt16BE(f.bodyStart), s.formats.length === 1 ? s.formats[0]! : 0), s.run.columnContext);
    }
    if (!anyTransform(s.transforms)) {
      s.run.dataRow(buf, f.start, f.bodyStart, f.end);
      return undefined;
    }
    const out = transformDataRow(buf.subarray(f.bodyStart, f.end), s.transforms, s.formats);
    s.run.dataRow(out, 0, 5, out.length);
    return out;
  }

  private copyData(s: Running, buf: Buffer, f: Frame): Buffer | null | undefined {
    if (s.copy === 'none') {
      s.run.copyData(buf, f.start, f.bodyStart, f.end); // COPY IN's data never comes this way; be safe
      return undefined;
    }
    const over = this.overCap(s);
    if (over) return over;
    if (!anyTransform(s.transforms)) {
      s.run.copyData(buf, f.start, f.bodyStart, f.end);
      return undefined;
    }
    const body = buf.subarray(f.bodyStart, f.end);
    const out = s.copy === 'out-text' ? transformCopyText(body, s.transforms) : transformCopyBinary(body, s.transforms);
    if (!out) return this.cutOff(s, { code: SQLSTATE_ROW_CAP, message: 'hoop: this COPY output cannot be masked row by row (one whole row per message is required); the result was stopped' });
    s.run.copyData(out, 0, 5, out.length);
    return out;
  }

  private copyOutResponse(body: Buffer, message: Buffer): Buffer | null | undefined {
    const s = this.queue.current();
    if (!s) return undefined;
    const r = new BodyReader(body, 'CopyOutResponse');
    const binary = r.byte() === 1;
    const n = r.count16();
    s.run.copyOut(binary);
    s.copy = binary ? 'out-binary' : 'out-text';
    s.transforms = null;
    if (s.plan.action === 'run' && s.plan.columns) {
      s.transforms = s.plan.columns(unknownColumns(n, binary ? 1 : 0), s.run.columnContext);
      if (anyTransform(s.transforms) && !binary && !copyFormatIsPlain(s.lowerSql)) {
        // The client sees CopyOutResponse, then the error, as when a COPY fails.
        const error = this.cutOff(s, { code: SQLSTATE_ROW_CAP, message: 'hoop: this COPY format (CSV, or a delimiter or NULL of its own) cannot be masked; use the default text format or binary' });
        return Buffer.concat([message, error]);
      }
    }
    return undefined;
  }

  /** The error that ends the result, when this row is one past the plan's row cap. */
  private overCap(s: Running): Buffer | null {
    s.rows++;
    const cap = s.plan.action === 'run' ? s.plan.rowCap : undefined;
    if (cap === undefined || s.rows <= cap) return null;
    return this.cutOff(s, { code: SQLSTATE_ROW_CAP, message: `hoop: the result passed this statement's row cap of ${cap} rows and was stopped`, hint: 'ask for approval to read more, or narrow the query' });
  }

  /**
   * Ends a statement's result part-way: returns the error the client gets in place of the
   * message; upstream gets a cancel, and what it still sends before ReadyForQuery is only accounted.
   */
  private cutOff(s: Running, error: Failure & { hint?: string }): Buffer {
    s.run.fail({ code: error.code, message: error.message });
    this.draining = true;
    this.host.cancelUpstream();
    return errorResponse({ severity: 'ERROR', code: error.code, message: error.message, hint: error.hint });
  }
}
