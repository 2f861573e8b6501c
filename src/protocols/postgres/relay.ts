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
import { copyFormatIsPlain, copyLayout, DEFAULT_TEXT_LAYOUT, prepareCopyData, type CopyLayout, type PreparedCopyRow } from './copy-out.js';
import { clientDecoder, type ClientDecoder } from './encodings.js';
import { rewriteNotice, rewriteNotification, rewriteParameterStatus, rewrites, type MessageRewrite } from './message-text.js';
import { refusalResponse } from './poison.js';
import { describedColumns, type Failure, type ResponseQueue, type Running } from './responses.js';
import type { StatementRun } from './results.js';
import { anyTransform, RowRewriter, unknownColumns } from './transform.js';
import { ChunkOutput } from './chunk-output.js';
import { ValueSink } from '../value-sink.js';

/** Upstream frames are trusted more than client ones, but still bounded (PostgreSQL's own 1 GB field limit). */
const UPSTREAM_MAX_FRAME = 1024 * 1024 * 1024 + 1024;
const EMPTY = Buffer.alloc(0);
/** onBackend's answer for a DataRow the rewriter holds rewritten, or a COPY row held prepared (see placeRewritten). */
const REWRITTEN = Buffer.alloc(0);
const COPY_QUEUED = Buffer.alloc(0);
/**
 * Message types whose accounting keeps nothing of their bytes by place (it decodes them at
 * once), so a run of them may move when the chunk is rewritten in place. Every other type (rows,
 * COPY data, notices: the record hashes those ranges later) is held where it was received.
 */
const PLACE_FREE = new Uint8Array(256);
for (const t of [
  MessageType.CommandComplete, MessageType.ReadyForQuery, MessageType.RowDescription, MessageType.ParameterDescription, MessageType.NoData,
  MessageType.ParseComplete, MessageType.BindComplete, MessageType.CloseComplete, MessageType.EmptyQueryResponse, MessageType.PortalSuspended,
]) PLACE_FREE[t] = 1;
/** program_limit_exceeded: a result cut off by the plan's row cap. */
const SQLSTATE_ROW_CAP = '54000';

export interface RelayHost {
  /** A ParameterStatus: false to drop it (the session is ending on it). */
  parameterStatus(name: string, value: string): boolean;
  /** An upstream FATAL/PANIC: kept as the session's end error. */
  upstreamFatal(message: string): void;
  /** Cancel the statement running upstream (a row cap cut its result off). */
  cancelUpstream(): void;
  /**
   * A message that belongs to no statement, as the client received it: a notice or notification
   * while idle; an error or ParameterStatus only when the scrubber changed it (`masked` counts what).
   */
  unattributed(buf: Buffer, f: Frame, masked: Record<string, number> | null): void;
  /** The session's content net over message texts (SessionContext.scrubText). */
  readonly scrubText?: (text: string, tally: (label: string) => void) => string;
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
  /** The decoder of the client encoding last asked for (message texts, COPY data). */
  private decoderCache: ClientDecoder | null = null;
  /**
   * Masked rows: prepared by `dataRow`, given their room in the chunk's output at once, and
   * written and accounted together (placeRewritten) before anything else is accounted, so
   * batched replacements (hash tokens) cost a few native calls a chunk, not one a value.
   */
  private readonly rewriter = new RowRewriter();
  private rewrittenRun: Running | null = null;
  private rewrittenSize = 0;
  /** The chunk's output while relayChunk builds it, and the queued rows' runs and places in it. */
  private built: ChunkOutput | null = null;
  private readonly queuedRuns: Running[] = [];
  private readonly queuedAt: number[] = [];
  /** COPY OUT rows held the same way: their values in copySink, their messages made (and
   *  appended to the output) when placed. A queue holds DataRows or COPY rows, never both. */
  private readonly queuedCopies: PreparedCopyRow[] = [];
  private readonly copySink = new ValueSink();

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
    // What goes to the client when messages were replaced (masked rows): built in the chunk
    // itself where it fits (chunk-output.ts), rewritten rows written straight into it, and sent
    // in one write per chunk. `held`: the passed run [runStart, ...) has a message the record
    // holds by its place in the chunk.
    let output: ChunkOutput | null = null;
    let held = false;
    for (const f of batch.frames) {
      end = f.end + shift;
      const replacement = this.onBackend(buf, f);
      if (replacement === undefined) {
        held ||= !PLACE_FREE[f.type];
        continue;
      }
      output = this.built ??= new ChunkOutput(out, runStart);
      output.pass(runStart, f.start + shift, held);
      if (replacement === REWRITTEN) this.queueRewritten(output, f.start + shift);
      else if (replacement !== null && replacement !== COPY_QUEUED) output.insert(replacement, end);
      runStart = end;
      held = false;
    }
    this.placeRewritten();
    this.built = null;
    if (batch.frames.length === 0 && lead === 0) end = runStart;
    const tail = this.reader.pendingFrame;
    if (tail && !this.draining && !this.silenced && this.streamable(tail.type)) {
      this.reader.dropPendingFrame();
      this.streaming = tail.total - (out.length - end);
      this.streamRun?.run.beginStreamed(tail.type === MessageType.DataRow);
      this.streamRun?.run.streamed(out, end, out.length);
      end = out.length;
      held = true;
    }
    if (output === null) write(this.client, out.subarray(runStart, end));
    else {
      output.pass(runStart, end, held);
      for (const piece of output.pieces()) write(this.client, piece);
    }
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
      if (this.draining || this.silenced || !s) {
        this.placeRewritten();
        return this.draining || this.silenced ? null : undefined;
      }
      return type === MessageType.DataRow ? this.dataRow(s, buf, f) : this.copyData(s, buf, f);
    }
    this.placeRewritten();
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
        queue.executeEnded();
        return undefined;
      case MessageType.PortalSuspended:
        queue.executeEnded(true);
        return undefined;
      case MessageType.ErrorResponse: {
        // Rewritten before it is accounted: the record keeps the text the client received.
        const context = queue.messageContext();
        const out = this.rewrite(type, body, context.redact, context.run);
        const fields = decodeNoticeFields(out.message ? out.message.subarray(5) : body);
        const error = { code: fields.C ?? 'XX000', message: fields.M ?? 'error' };
        if (fields.V === 'FATAL' || fields.V === 'PANIC' || fields.S === 'FATAL' || fields.S === 'PANIC') this.host.upstreamFatal(error.message);
        if (out.masked && out.message) this.host.unattributed(out.message, wholeFrame(out.message), out.masked);
        const refusal = queue.error(error);
        return refusal ? refusalResponse(refusal) : (out.message ?? undefined);
      }
      case MessageType.ReadyForQuery:
        queue.readyForQuery(decodeReadyForQuery(body));
        return undefined;
      case MessageType.BackendKeyData:
        return null; // upstream's key must never reach the client
      case MessageType.ParameterStatus: {
        const p = decodeParameterStatus(body);
        queue.parameterStatus(p.name, p.value);
        if (!this.host.parameterStatus(p.name, p.value)) return null;
        const run = queue.messageContext().run;
        const out = this.rewrite(type, body, false, run);
        if (out.masked && out.message) this.host.unattributed(out.message, wholeFrame(out.message), out.masked);
        return out.message ?? undefined;
      }
      case MessageType.NotificationResponse:
      case MessageType.NoticeResponse: {
        // A notice during a Parse or Bind recorded on its own belongs to that record.
        const run = queue.messageTarget();
        // Notices and notifications carry data too (a DO block's RAISE NOTICE or pg_notify per
        // row): each counts against the row cap.
        const s = run ? queue.current() : null;
        const over = s && s.run === run ? this.overCap(s) : null;
        if (over) return over;
        const redact = type === MessageType.NoticeResponse && queue.messageContext().redact;
        const out = this.rewrite(type, body, redact, run);
        const [b, m] = out.message ? [out.message, wholeFrame(out.message)] : [buf, f];
        if (!run) this.host.unattributed(b, m, out.masked);
        else if (type === MessageType.NoticeResponse) run.notice(b, m.start, m.bodyStart, m.end);
        else run.notification(b, m.start, m.bodyStart, m.end);
        return out.message ?? undefined;
      }
      default:
        return undefined; // CopyDone, ...
    }
  }

  private dataRow(s: Running, buf: Buffer, f: Frame): Buffer | null | undefined {
    const over = this.overCap(s);
    if (over) {
      this.placeRewritten();
      return over;
    }
    if (s.transforms === null && s.plan.action === 'run' && s.plan.columns) {
      // Rows of a portal described nowhere: the plan decides on columns it cannot name.
      s.transforms = s.plan.columns(unknownColumns(buf.readInt16BE(f.bodyStart), s.formats), s.run.columnContext);
    }
    if (this.queuedCopies.length > 0) this.placeRewritten(); // a queue holds one kind
    const size = anyTransform(s.transforms) ? this.rewriter.prepare(buf, f.bodyStart, f.end, s.transforms, s.formats) : -1;
    if (size < 0) {
      this.placeRewritten(); // rows queued before this one are accounted first
      s.run.dataRow(buf, f.start, f.bodyStart, f.end); // no value changed: the original bytes go
      return undefined;
    }
    this.rewrittenRun = s;
    this.rewrittenSize = size;
    return REWRITTEN;
  }

  /** Gives the row `dataRow` just prepared (the frame at `frameStart`) its room in the chunk's output. */
  private queueRewritten(output: ChunkOutput, frameStart: number): void {
    this.queuedRuns.push(this.rewrittenRun!);
    this.queuedAt.push(output.reserveRow(this.rewrittenSize, this.rewriter.growthOf(this.rewriter.queued - 1), frameStart));
    this.rewrittenRun = null;
  }

  /**
   * Writes the queued rows into the output (one settle of their batched replacements first) and
   * accounts them, in order: DataRows into the room reserved for them, COPY rows appended (their
   * escaping needs the settled bytes, so their length is known only now; nothing was appended
   * after them meanwhile).
   */
  private placeRewritten(): void {
    const n = this.queuedRuns.length;
    if (n === 0) return;
    const output = this.built!;
    if (this.queuedCopies.length > 0) {
      this.copySink.settle();
      for (let k = 0; k < n; k++) {
        const row = this.queuedCopies[k]!;
        const length = row.length(this.copySink);
        const place = output.reserve(length);
        const bytes = output.bufferOf(place);
        const at = output.offsetOf(place);
        row.write(this.copySink, bytes, at, length);
        this.queuedRuns[k]!.run.copyData(bytes, at, at + 5, at + length);
      }
      this.copySink.reset();
      this.queuedCopies.length = 0;
    } else {
      for (let k = 0; k < n; k++) {
        const place = this.queuedAt[k]!;
        const bytes = output.bufferOf(place); // read now: reserving may have moved it
        const at = output.offsetOf(place);
        this.rewriter.write(k, bytes, at);
        this.queuedRuns[k]!.run.dataRow(bytes, at, at + 5, at + this.rewriter.sizeOf(k));
      }
      this.rewriter.clear();
      this.queuedAt.length = 0;
    }
    this.queuedRuns.length = 0;
  }

  private copyData(s: Running, buf: Buffer, f: Frame): Buffer | null | undefined {
    // Queued DataRows, or queued COPY rows ahead of a row accounted at once, go first.
    if (this.queuedCopies.length === 0 || s.copy === 'none' || s.copyHeader || !anyTransform(s.transforms)) this.placeRewritten();
    if (s.copy === 'none') {
      s.run.copyData(buf, f.start, f.bodyStart, f.end); // COPY IN's data never comes this way; be safe
      return undefined;
    }
    if (s.copyHeader) {
      s.copyHeader = false; // the HEADER line: column names, not a row
      s.run.copyData(buf, f.start, f.bodyStart, f.end);
      return undefined;
    }
    const over = this.overCap(s);
    if (over) {
      this.placeRewritten();
      return over;
    }
    if (!anyTransform(s.transforms)) {
      s.run.copyData(buf, f.start, f.bodyStart, f.end);
      return undefined;
    }
    const prepared = s.copyLayout ? prepareCopyData(buf, f.bodyStart, f.end, s.copyColumns, s.transforms, s.copyLayout, this.copySink) : null;
    if (!prepared) {
      this.placeRewritten();
      return this.cutOff(s, { code: SQLSTATE_ROW_CAP, message: "hoop: this COPY output cannot be masked row by row (one whole row per message, in the statement's format, is required); the result was stopped" });
    }
    this.queuedRuns.push(s);
    this.queuedCopies.push(prepared);
    return COPY_QUEUED;
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
    s.copyLayout = null;
    s.copyColumns = n;
    s.copyHeader = false;
    if (s.plan.action !== 'run' || !s.plan.columns) return undefined;
    const context = s.run.columnContext;
    s.transforms = s.plan.columns(unknownColumns(n, [binary ? 1 : 0]), context);
    if (!anyTransform(s.transforms)) return undefined;
    const layout = this.copyLayoutOf(s, binary, context.statement);
    if (typeof layout === 'string') {
      // The client sees CopyOutResponse, then the error, as when a COPY fails.
      const error = this.cutOff(s, { code: SQLSTATE_ROW_CAP, message: `hoop: ${layout}; the result was stopped` });
      return Buffer.concat([message, error]);
    }
    s.copyLayout = layout;
    s.copyHeader = layout.format !== 'binary' && layout.header;
    return undefined;
  }

  /** How the COPY's rows are laid out: the plan's COPY options for the statement, or (without
   *  them) the default text format or binary; a string says why they cannot be rewritten. */
  private copyLayoutOf(s: Running, binary: boolean, statement: number): CopyLayout | string {
    const options = s.plan.action === 'run' ? (s.plan.copyOptions?.[statement] ?? null) : null;
    if (!binary && !this.decoder()?.asciiSafe) return `COPY text in client encoding ${this.queue.clientEncoding} cannot be masked row by row`;
    // COPY's own ENCODING option writes the rows in it instead (a delimiter or quote byte may then be part of a character).
    if (!binary && options?.encoding !== undefined && !clientDecoder(options.encoding)?.asciiSafe) return `COPY text in encoding ${options.encoding} cannot be masked row by row`;
    if (options) return copyLayout(binary, options);
    if (binary) return { format: 'binary' };
    return copyFormatIsPlain(s.lowerSql) ? DEFAULT_TEXT_LAYOUT : 'this COPY format (CSV, or a delimiter or NULL of its own) cannot be masked; use the default text format or binary';
  }

  private decoder(): ClientDecoder | null {
    const name = this.queue.clientEncoding;
    if (this.decoderCache?.name !== name) this.decoderCache = clientDecoder(name);
    return this.decoderCache;
  }

  /**
   * A NoticeResponse, ErrorResponse, NotificationResponse or ParameterStatus with its texts
   * redacted (`redact`) and scrubbed, counted under `run`, or for a message of no statement in
   * `masked`; `message` is null when nothing changed (the original bytes go).
   */
  private rewrite(type: number, body: Buffer, redact: boolean, run: StatementRun | null): { message: Buffer | null; masked: Record<string, number> | null } {
    let masked: Record<string, number> | null = null;
    const tally = run ? run.tally : (label: string, n = 1) => {
      masked ??= {};
      masked[label] = (masked[label] ?? 0) + n;
    };
    const r: MessageRewrite = { redactValues: redact, tally, decoder: this.decoder(), ...(this.host.scrubText ? { scrubText: this.host.scrubText } : {}) };
    if (!rewrites(r)) return { message: null, masked: null };
    const message = type === MessageType.ParameterStatus ? rewriteParameterStatus(body, r)
      : type === MessageType.NotificationResponse ? rewriteNotification(body, r)
      : rewriteNotice(type, body, r);
    return { message, masked };
  }

  /** The error that ends the result, when this row is one past the plan's row cap. */
  private overCap(s: Running): Buffer | null {
    s.rows++;
    const cap = s.plan.action === 'run' ? s.plan.rowCap : undefined;
    if (cap === undefined || s.rows <= cap) return null;
    return this.cutOff(s, { code: SQLSTATE_ROW_CAP, message: `hoop: the result passed this statement's row cap of ${cap} rows and was stopped`, hint: rowCapHint(s.plan) });
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

const ROW_CAP_HINT = 'ask for approval to read more, or narrow the query';

/** The plan's hint for a result cut at its row cap (one line), else the default one. */
function rowCapHint(plan: Running['plan']): string {
  if (plan.action !== 'run' || !plan.rowCapHint) return ROW_CAP_HINT;
  try {
    const hint = plan.rowCapHint();
    return typeof hint === 'string' && hint !== '' ? hint.replace(/[\r\n]+/g, ' ') : ROW_CAP_HINT;
  } catch {
    return ROW_CAP_HINT;
  }
}

/** The frame of a whole message built on its own (type, length, body). */
function wholeFrame(message: Buffer): Frame {
  return { type: message[0]!, start: 0, bodyStart: 5, end: message.length };
}

