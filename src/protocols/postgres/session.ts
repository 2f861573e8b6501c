/**
 * One proxied session after startup: frames both directions, forwards the original bytes in runs,
 * holds Query/Execute/FunctionCall behind the write-ahead hook, and correlates upstream responses
 * to the messages that caused them (FIFO) to account for every statement.
 */
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { ProtocolError, errorMessage, isHoopError } from '../../errors.js';
import type { SessionContext, StatementStart } from './engine.js';
import { fatal, safely } from './engine.js';
import { FrameReader, type Frame, type FrameBatch } from './framing.js';
import { drained, endStream, pump, write } from './io.js';
import {
  BodyReader,
  MessageType,
  cstring,
  decodeBind,
  decodeCommandComplete,
  decodeExecute,
  decodeFunctionCall,
  decodeNoticeFields,
  decodeParameterDescription,
  decodeParameterStatus,
  decodeParse,
  decodeQuery,
  decodeReadyForQuery,
  decodeRowDescription,
  decodeTarget,
  errorResponse,
  frame,
  type FieldDescription,
  type ParseMessage,
} from './messages.js';
import { unfaithfulEncoding } from './encodings.js';
import { NameTable, valueOf, type Version } from './names.js';
import { decodeParameter } from './params.js';
import { StatementRun } from './results.js';
import { splitStatements } from './split.js';
import { sqlstateOf } from './sqlstate.js';
import type { UpstreamConnection } from './upstream.js';

/** Upstream frames are trusted more than client ones, but still bounded (PostgreSQL's own 1 GB field limit). */
const UPSTREAM_MAX_FRAME = 1024 * 1024 * 1024 + 1024;
const EMPTY = Buffer.alloc(0);
const TERMINATE = frame(MessageType.Terminate);

interface PreparedStatement { sql: string; paramTypes: number[]; fields: FieldDescription[] | null }
interface Portal {
  statementName: string;
  /** The statement version the Bind named: resolved when needed, as the server may undo it. */
  statementVersion: Version<PreparedStatement> | null;
  parameters: unknown[];
  resultFormats: number[];
  fields: FieldDescription[] | null;
}

/**
 * A Parse/Bind/Close not yet answered: the server may still refuse or skip it (names.ts).
 * `segment` counts the Syncs the client had sent before it.
 */
interface Change {
  table: NameTable<PreparedStatement> | NameTable<Portal>;
  version: Version<PreparedStatement> | Version<Portal>;
  /** A failed Parse of the unnamed statement has already dropped the previous one. */
  clearOnFailure: boolean;
  segment: number;
  /** A named Parse is recorded: SQL `EXECUTE name` runs it without any Bind/Execute. */
  run?: StatementRun;
  /** A Bind withheld because the Execute it was for was refused: the client gets this error. */
  refusal?: { code: string; message: string } | null;
}

/** What the upstream owes us, in order: one entry per frontend message that gets a response. */
type Expected =
  | { kind: 'parse' | 'bind' | 'close'; change: Change }
  | { kind: 'sync' }
  | { kind: 'describe'; statement: PreparedStatement | null; portal: Portal | null }
  | { kind: 'execute'; run: StatementRun; portal: Portal | null; described: boolean }
  | { kind: 'query'; run: StatementRun };

const SYNC: Expected = { kind: 'sync' };
/** Bounds on the frames kept from a Bind until the next chunk shows whether it is executed. */
const MAX_CARRIED_FRAMES = 8;
const MAX_CARRIED_BYTES = 1024 * 1024;
/** Outstanding frontend messages per session (bounded memory against a client that never reads). */
const MAX_OUTSTANDING = 1_000_000;
/**
 * Bounds on completed runs held for their implicit transaction's fate (a pipeline without Sync):
 * past them the oldest is recorded as run, so a client cannot make the gateway hold results.
 */
const MAX_UNCOMMITTED = 1_000;
const MAX_UNCOMMITTED_BYTES = 16 * 1024 * 1024;

export interface SessionOptions {
  client: Duplex;
  upstream: UpstreamConnection;
  ctx: SessionContext;
  reader: FrameReader;
  clientChunks: AsyncIterator<Buffer>;
}

export class Session {
  private readonly client: Duplex;
  private readonly upstream: UpstreamConnection;
  private readonly ctx: SessionContext;
  private readonly reader: FrameReader;
  private readonly clientChunks: AsyncIterator<Buffer>;
  private readonly statements = new NameTable<PreparedStatement>();
  private readonly portals = new NameTable<Portal>();
  private readonly expected: Expected[] = [];
  /** Syncs sent by the client so far, and the unanswered Parse/Bind/Close in message order. */
  private segment = 0;
  private readonly pendingChanges: Change[] = [];
  /** Called whenever a change is settled or the session closes (an Execute may be waiting). */
  private onSettled: (() => void) | null = null;
  /** Set once SQL PREPARE/DEALLOCATE/DISCARD ran: named statements may hold SQL we never saw. */
  private sqlPrepared = false;
  /** Frames from a Bind on, kept until the next chunk shows whether an Execute follows it. */
  private carried: FrameBatch | null = null;
  private closing = false;
  private terminated = false;
  private endReason: { reason: string; error: string | null } | null = null;
  /** Last FATAL/PANIC text from upstream, reported as the session's end error. */
  private upstreamFatal: string | null = null;
  /** Bytes still to come of the DataRow/CopyData being passed on as it arrives, and its run. */
  private streaming = 0;
  private streamRun: StatementRun | null = null;
  /**
   * Whether statements now run in an implicit transaction (outside BEGIN ... COMMIT), where the
   * extended protocol commits only at Sync: an Execute that completed may still be rolled back by
   * a later error in its pipeline or by a failed commit. Such runs wait in `uncommitted` and are
   * recorded once the transaction's fate is known.
   */
  private implicitTransaction: boolean;
  private readonly uncommitted: StatementRun[] = [];
  private uncommittedBytes = 0;

  constructor(o: SessionOptions) {
    this.client = o.client;
    this.upstream = o.upstream;
    this.ctx = o.ctx;
    this.reader = o.reader;
    this.clientChunks = o.clientChunks;
    this.implicitTransaction = o.upstream.transactionStatus === 'I';
    this.upstream.socket.on('error', () => {}); // surfaces as 'close'
  }

  async run(): Promise<void> {
    await Promise.all([this.clientLoop(), this.upstreamLoop()]);
    // Without a Sync, an implicit transaction never commits: the server rolls it back. (With a
    // Sync sent but unanswered, the commit may have happened: the statement stays recorded as run.)
    if (!this.expected.some((e) => e.kind === 'sync')) {
      for (const run of this.uncommitted) run.rolledBack({ code: '08006', message: 'the session ended before a Sync committed it' });
    }
    this.recordUncommitted();
    for (const e of this.expected.splice(0)) {
      if (e.kind === 'execute' || e.kind === 'query') this.endRun(e.run, notCompleted('the session ended before the statement completed'));
      else if ('change' in e && e.change.run) this.endRun(e.change.run, notCompleted('the session ended before the statement completed'));
    }
    const end = this.endReason ?? { reason: 'closed', error: null };
    safely(() => this.ctx.hooks.sessionEnd(end));
  }

  // -------------------------------------------------------------------------------------------
  // client -> upstream

  private async clientLoop(): Promise<void> {
    try {
      await this.clientChunks.return?.(); // from here on the client flows through pump()
      await this.forward(this.reader.push(EMPTY)); // frames that arrived behind the StartupMessage
      await pump(this.client, (chunk) => (this.closing ? undefined : this.forward(this.withCarried(this.reader.push(chunk)))));
      this.close(this.terminated ? 'client-terminated' : 'client-closed', null);
    } catch (err) {
      if (err instanceof ProtocolError) this.protocolError(err.message);
      else this.close('client-error', errorMessage(err));
    }
  }

  /**
   * Forwards a batch of client frames as original bytes. At a write-ahead barrier (Query, Execute,
   * FunctionCall) the bytes so far are held, not sent, until the hook resolves: order is kept, and
   * a pipelined Parse/Bind/Execute/Sync still leaves in one write.
   */
  private forward(batch: FrameBatch, from = 0, held?: number): void | Promise<void> {
    const buf = batch.buffer;
    const frames = batch.frames;
    let runStart = held ?? frames[from]?.start ?? 0;
    for (let i = from; i < frames.length; i++) {
      if (this.closing) return;
      const f = frames[i]!;
      const body = buf.subarray(f.bodyStart, f.end);
      switch (f.type) {
        case MessageType.Query: {
          const sql = decodeQuery(body).sql;
          const statements = severalStatements(sql);
          return this.barrier(batch, i, runStart, { protocol: 'simple', statement: sql, statementName: null, portal: null, parameters: [], ...(statements ? { statements } : {}) });
        }
        case MessageType.FunctionCall: {
          // Fastpath function call (e.g. libpq's large objects): it runs code, so it is recorded,
          // with its arguments (what a lo_write writes, what a lo_export names).
          const call = decodeFunctionCall(body);
          const parameters = call.values.map((v, k) => decodeParameter(v, call.formats[k]!, undefined));
          return this.barrier(batch, i, runStart, { protocol: 'simple', statement: `-- FunctionCall oid ${call.oid}`, statementName: null, portal: null, parameters });
        }
        case MessageType.Execute:
          if (this.unsettledBeforeLastSync()) return this.afterEarlierSegments(batch, i, runStart);
          return this.execute(batch, i, runStart, decodeExecute(body).portal);
        case MessageType.Parse: {
          const p = decodeParse(body);
          if (p.name !== '') return this.namedParse(batch, i, runStart, p);
          const version = this.statements.define(p.name, { sql: p.sql, paramTypes: p.paramTypes, fields: null });
          this.expectChange('parse', this.statements, version, p.name === '');
          break;
        }
        case MessageType.Bind: {
          if (this.unsettledBeforeLastSync()) return this.afterEarlierSegments(batch, i, runStart);
          const { name, portal } = this.bind(body);
          // Bind plans the statement, and planning runs functions (constant folding, estimates):
          // a Bind not executed right away is recorded on its own, before it is sent.
          const next = this.executedNext(batch, i, name);
          if (next === 'undecided') return this.carry(batch, i, runStart);
          if (next === 'no') return this.bindBarrier(batch, i, runStart, name, portal);
          this.expectChange('bind', this.portals, this.portals.define(name, portal), false);
          break;
        }
        case MessageType.Describe: {
          const t = decodeTarget(body, 'Describe');
          this.expect({
            kind: 'describe',
            statement: t.kind === 'S' ? (this.statements.get(t.name) ?? null) : null,
            portal: t.kind === 'P' ? (this.portals.get(t.name) ?? null) : null,
          });
          break;
        }
        case MessageType.Close: {
          const t = decodeTarget(body, 'Close');
          if (t.kind === 'S') this.expectChange('close', this.statements, this.statements.define(t.name, undefined), false);
          else this.expectChange('close', this.portals, this.portals.define(t.name, undefined), false);
          break;
        }
        case MessageType.Sync:
          this.expect(SYNC);
          this.segment++;
          break;
        case MessageType.Terminate:
          this.terminated = true;
          break;
        default:
          break; // CopyData, CopyDone, CopyFail, Flush, ...: bytes pass through untouched
      }
    }
    const last = frames[frames.length - 1];
    if (last) write(this.upstream.socket, buf.subarray(runStart, last.end));
    return drained(this.upstream.socket);
  }

  /** Queues what upstream owes; a client that pipelines without ever reading is cut off. */
  private expect(e: Expected): void {
    if (this.expected.length >= MAX_OUTSTANDING) {
      throw new ProtocolError(`more than ${MAX_OUTSTANDING} messages awaiting a response: the client is not reading`);
    }
    this.expected.push(e);
  }

  private expectChange(kind: 'parse' | 'bind' | 'close', table: Change['table'], version: Change['version'], clearOnFailure: boolean, run?: StatementRun): void {
    const change: Change = { table, version, clearOnFailure, segment: this.segment, ...(run ? { run } : {}) };
    this.expect({ kind, change });
    this.pendingChanges.push(change);
  }

  /**
   * A named Parse is a write-ahead barrier of its own: a named statement can be run by SQL
   * (`EXECUTE name` in a simple Query), and that record must be traceable to this SQL. If it
   * cannot be recorded, a Parse that fails upstream goes instead, so the name is never defined.
   */
  private async namedParse(batch: FrameBatch, i: number, runStart: number, p: ParseMessage): Promise<void> {
    const f = batch.frames[i]!;
    const run = await this.writeAhead({ protocol: 'extended', statement: p.sql, statementName: p.name, portal: null, parameters: [] });
    if (!this.admit(run)) return;
    const version = this.statements.define(p.name, { sql: p.sql, paramTypes: p.paramTypes, fields: null });
    this.expectChange('parse', this.statements, version, false, run);
    if (run.refusal) {
      const poison = frame(MessageType.Parse, cstring(p.name), cstring('hoop refused'), Buffer.alloc(2));
      write(this.upstream.socket, Buffer.concat([batch.buffer.subarray(runStart, f.start), poison]));
      runStart = f.end;
      await drained(this.upstream.socket);
    }
    const rest = this.forward(batch, i + 1, runStart);
    if (rest) await rest;
  }

  /** The server answered the message that made `change`: applied, failed, or skipped it. */
  private settle(change: Change, outcome: 'applied' | 'failed' | 'skipped', error?: { code: string; message: string }): void {
    const table = change.table as NameTable<unknown>;
    const version = change.version as Version<unknown>;
    if (outcome === 'applied') table.confirm(version);
    else if (outcome === 'failed' && change.clearOnFailure) table.clear(version);
    else table.undo(version);
    if (change.run) {
      if (outcome === 'applied') this.endRun(change.run);
      else if (outcome === 'failed') this.endRun(change.run, error);
      else this.endRun(change.run, { code: error?.code ?? '08006', message: `not executed: an earlier message in the same pipeline failed: ${error?.message ?? ''}` });
    }
    const at = this.pendingChanges[0] === change ? 0 : this.pendingChanges.indexOf(change);
    if (at >= 0) this.pendingChanges.splice(at, 1);
    this.onSettled?.();
  }

  /** Whether a Parse/Bind/Close before the client's last Sync is still unanswered. */
  private unsettledBeforeLastSync(): boolean {
    return this.pendingChanges.length > 0 && this.pendingChanges[0]!.segment < this.segment;
  }

  /**
   * A Bind or Execute names SQL through statement and portal names, so the server's answers to the
   * Parse/Bind/Close of earlier Sync segments must be in first (an error there makes the server
   * skip the rest of that segment). Within the current segment the prediction holds: if a message
   * before fails, the server skips this one too. What is held before frames[i] goes now: it holds
   * no Bind or statement that is not already recorded.
   */
  private async afterEarlierSegments(batch: FrameBatch, i: number, runStart: number): Promise<void> {
    const f = batch.frames[i]!;
    write(this.upstream.socket, batch.buffer.subarray(runStart, f.start));
    await new Promise<void>((resolve) => {
      this.onSettled = () => {
        if (this.closing || !this.unsettledBeforeLastSync()) {
          this.onSettled = null;
          resolve();
        }
      };
      this.onSettled();
    });
    if (this.closing) return;
    const rest = this.forward(batch, i, f.start);
    if (rest) await rest;
  }

  /**
   * Whether the frames after a Bind at i (Describes aside) execute its portal: 'undecided' when
   * the batch ends first. Drivers write Bind, Describe and Execute separately, so they may arrive
   * apart; until a Flush or Sync the client cannot expect an answer, so waiting costs nothing.
   */
  private executedNext(batch: FrameBatch, i: number, portal: string): 'yes' | 'no' | 'undecided' {
    for (let j = i + 1; j < batch.frames.length; j++) {
      const f = batch.frames[j]!;
      if (f.type === MessageType.Describe) continue;
      return f.type === MessageType.Execute && decodeExecute(batch.buffer.subarray(f.bodyStart, f.end)).portal === portal ? 'yes' : 'no';
    }
    // What is carried is copied once per chunk: a client trickling Describes gets a record instead.
    const carried = batch.frames[batch.frames.length - 1]!.end - batch.frames[i]!.start;
    return batch.frames.length - i <= MAX_CARRIED_FRAMES && carried <= MAX_CARRIED_BYTES ? 'undecided' : 'no';
  }

  /** Sends what is held before frames[i] and keeps frames[i..] to be read again with the next chunk. */
  private carry(batch: FrameBatch, i: number, runStart: number): void | Promise<void> {
    const from = batch.frames[i]!.start;
    const last = batch.frames[batch.frames.length - 1]!;
    this.carried = {
      buffer: batch.buffer.subarray(from, last.end), // the reader never writes a batch's buffer again
      frames: batch.frames.slice(i).map((f) => ({ type: f.type, start: f.start - from, bodyStart: f.bodyStart - from, end: f.end - from })),
    };
    if (runStart < from) write(this.upstream.socket, batch.buffer.subarray(runStart, from));
    return drained(this.upstream.socket);
  }

  /** The carried frames followed by a new batch's. */
  private withCarried(batch: FrameBatch): FrameBatch {
    const carried = this.carried;
    if (!carried) return batch;
    if (batch.frames.length === 0) return { buffer: EMPTY, frames: [] };
    this.carried = null;
    const first = batch.frames[0]!.start;
    const shift = carried.buffer.length - first;
    return {
      buffer: Buffer.concat([carried.buffer, batch.buffer.subarray(first, batch.frames[batch.frames.length - 1]!.end)]),
      frames: [...carried.frames, ...batch.frames.map((f) => ({ type: f.type, start: f.start + shift, bodyStart: f.bodyStart + shift, end: f.end + shift }))],
    };
  }

  /** A Bind recorded on its own; if it cannot be, a Bind that fails before planning goes instead. */
  private async bindBarrier(batch: FrameBatch, i: number, runStart: number, name: string, portal: Portal): Promise<void> {
    const f = batch.frames[i]!;
    const run = await this.writeAhead({
      protocol: 'extended',
      statement: this.sqlOf(portal),
      statementName: portal.statementName,
      portal: name,
      parameters: portal.parameters,
    });
    if (!this.admit(run)) return;
    this.expectChange('bind', this.portals, this.portals.define(name, portal), false, run);
    if (run.refusal) {
      const poison = poisonBind(name);
      write(this.upstream.socket, Buffer.concat([batch.buffer.subarray(runStart, f.start), poison]));
      runStart = f.end;
      await drained(this.upstream.socket);
    }
    const rest = this.forward(batch, i + 1, runStart);
    if (rest) await rest;
  }

  private execute(batch: FrameBatch, i: number, runStart: number, name: string): Promise<void> {
    const portal = this.portals.get(name) ?? null;
    return this.barrier(batch, i, runStart, {
      protocol: 'extended',
      statement: portal ? this.sqlOf(portal) : '',
      statementName: portal ? portal.statementName : null,
      portal: name,
      parameters: portal?.parameters ?? [],
    }, portal);
  }

  /**
   * The write-ahead barrier at frames[i]: the bytes held since `runStart` and the statement itself
   * leave only once hooks.queryStart has resolved; then the rest of the batch continues.
   */
  private async barrier(batch: FrameBatch, i: number, runStart: number, s: Omit<StatementStart, 'queryId'>, portal?: Portal | null): Promise<void> {
    const f = batch.frames[i]!;
    const run = await this.writeAhead(s);
    if (!this.admit(run)) return;
    try {
      this.expect(portal === undefined ? { kind: 'query', run } : { kind: 'execute', run, portal, described: false });
    } catch (err) {
      this.endRun(run, notCompleted('the statement was not sent: the session ended on a protocol error'));
      throw err;
    }
    if (run.refusal) {
      const poison = portal === undefined ? POISON_QUERY : this.poisonExecute();
      const bind = portal === undefined ? -1 : this.coveredBind(batch, i, runStart);
      if (bind < 0) write(this.upstream.socket, Buffer.concat([batch.buffer.subarray(runStart, f.start), poison]));
      else {
        // The Bind this Execute covers must not reach the server either: planning runs functions.
        const b = batch.frames[bind]!;
        const name = decodeExecute(batch.buffer.subarray(f.bodyStart, f.end)).portal;
        const change = [...this.expected].reverse().find((e) => e.kind === 'bind');
        if (change && 'change' in change) change.change.refusal = run.refusal;
        write(this.upstream.socket, Buffer.concat([batch.buffer.subarray(runStart, b.start), poisonBind(name), batch.buffer.subarray(b.end, f.start), poison]));
      }
      runStart = f.end;
      await drained(this.upstream.socket);
    }
    const rest = this.forward(batch, i + 1, runStart);
    if (rest) await rest;
  }

  private bind(body: Buffer): { name: string; portal: Portal } {
    const b = decodeBind(body);
    const statement = this.statements.get(b.statement) ?? null;
    const types = statement?.paramTypes ?? [];
    return { name: b.portal, portal: {
      statementName: b.statement,
      statementVersion: this.statements.version(b.statement),
      // Decoded now, for the audit record; upstream still receives the original bytes.
      parameters: b.values.map((v, i) => decodeParameter(v, b.paramFormats[i]!, types[i] || undefined)),
      resultFormats: b.resultFormats,
      fields: null,
    } };
  }

  /**
   * SQL PREPARE, DEALLOCATE and DISCARD change the session's named statements without any Parse
   * or Close: from then on the engine no longer knows what a name holds, and says so in the record
   * (the PREPARE itself is in the log) rather than naming SQL that may not be what runs.
   */
  private preparedBySql(): void {
    this.sqlPrepared = true;
    // (the unnamed statement is out of SQL's reach)
    this.statements.replaceAll((name, old) => ({ ...old, sql: unknownStatement(name) }), (name) => name !== '');
  }

  /** The SQL a portal runs, as far as the engine knows it. */
  private sqlOf(portal: Portal): string {
    const sql = valueOf(portal.statementVersion)?.sql;
    if (sql !== undefined) return sql;
    return this.sqlPrepared && portal.statementName !== '' ? unknownStatement(portal.statementName) : '';
  }

  /** The Bind (only Describes between) that the Execute at i covers, if it is still held. */
  private coveredBind(batch: FrameBatch, i: number, runStart: number): number {
    let j = i - 1;
    while (j >= 0 && batch.frames[j]!.type === MessageType.Describe) j--;
    return j >= 0 && batch.frames[j]!.type === MessageType.Bind && batch.frames[j]!.start >= runStart ? j : -1;
  }

  /** An Execute of a portal the client never bound: fails upstream without side effects. */
  private poisonExecute(): Buffer {
    let name: string;
    do name = `hoop refused ${randomUUID()}`;
    while (this.portals.get(name) !== undefined);
    return frame(MessageType.Execute, cstring(name), Buffer.alloc(4));
  }

  /** The write-ahead barrier: resolves to a run that is either admitted or refused. */
  private async writeAhead(s: Omit<StatementStart, 'queryId'>): Promise<StatementRun> {
    const start: StatementStart = { queryId: randomUUID(), ...s };
    try {
      await this.ctx.hooks.queryStart(start);
      return new StatementRun(start, this.ctx.payloadLimit);
    } catch (err) {
      return new StatementRun(start, this.ctx.payloadLimit, refusalOf(err));
    }
  }

  /** After the await: if the session ended meanwhile, the statement is not sent. */
  private admit(run: StatementRun): boolean {
    if (!this.closing) return true;
    this.endRun(run, notCompleted('the session ended before the statement was sent'));
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // upstream -> client

  private async upstreamLoop(): Promise<void> {
    const reader = new FrameReader({ maxFrameBytes: UPSTREAM_MAX_FRAME, peer: 'upstream' });
    try {
      if (this.upstream.leftover.length > 0) await this.relayChunk(reader, this.upstream.leftover);
      await pump(this.upstream.socket, (chunk) => this.relayChunk(reader, chunk));
      this.close('upstream-closed', this.upstreamFatal);
    } catch (err) {
      this.close('upstream-error', errorMessage(err));
    }
  }

  /**
   * Relays one received chunk to the client in one write where possible, accounting each message
   * against its statement; returns a promise only when the client must drain first.
   *
   * A DataRow or CopyData that nothing needs whole (its statement's kept rows are full) is passed
   * on as its bytes arrive, split across chunks: neither the chunk nor the message is copied
   * to join the pieces, and a huge row is never buffered.
   */
  private relayChunk(reader: FrameReader, chunk: Buffer): void | Promise<void> {
    // `lead` bytes at the chunk's start finish a message already being streamed.
    const lead = Math.min(this.streaming, chunk.length);
    if (lead > 0) {
      this.streaming -= lead;
      this.streamRun?.streamed(chunk, 0, lead);
    }
    const batch = lead < chunk.length ? reader.push(lead > 0 ? chunk.subarray(lead) : chunk) : { buffer: EMPTY, frames: [] };
    // With a lead, the reader held nothing, so batch.buffer is chunk[lead..]: write from the chunk.
    const out = lead > 0 ? chunk : batch.buffer;
    const shift = lead > 0 ? lead : 0;
    const buf = batch.buffer;
    let runStart = lead > 0 ? 0 : (batch.frames[0]?.start ?? 0);
    let end = lead;
    for (const f of batch.frames) {
      end = f.end + shift;
      const replacement = this.onBackend(buf, f);
      if (replacement === undefined) continue;
      write(this.client, out.subarray(runStart, f.start + shift));
      if (replacement) write(this.client, replacement);
      runStart = end;
    }
    if (batch.frames.length === 0 && lead === 0) end = runStart;
    const tail = reader.pendingFrame;
    if (tail && this.streamable(tail.type)) {
      reader.dropPendingFrame();
      this.streaming = tail.total - (out.length - end);
      this.streamRun?.beginStreamed(tail.type === MessageType.DataRow);
      this.streamRun?.streamed(out, end, out.length);
      end = out.length;
    }
    write(this.client, out.subarray(runStart, end));
    return drained(this.client);
  }

  /** Whether an incomplete message of `type` can go on before it is whole: sets its run. */
  private streamable(type: number): boolean {
    if (type !== MessageType.DataRow && type !== MessageType.CopyData) return false;
    const front = this.expected[0];
    if (front?.kind === 'execute' && !front.described) this.applyPortalDescription(front);
    const run = front && (front.kind === 'execute' || front.kind === 'query') ? front.run : null;
    if (run && !run.isTruncated) return false; // its values are kept: decode it whole
    this.streamRun = run;
    return true;
  }

  /**
   * Accounts one backend message. Returns undefined to pass it, a Buffer to send instead, null to
   * drop it. DataRow and CopyData (nearly every message of a big result) are accounted by offsets
   * into the received chunk: no slice, no copy.
   */
  private onBackend(buf: Buffer, f: Frame): Buffer | null | undefined {
    const front = this.expected[0];
    const run = front && (front.kind === 'execute' || front.kind === 'query') ? front.run : null;
    if (front?.kind === 'execute' && !front.described) this.applyPortalDescription(front);
    const type = f.type;
    if (type === MessageType.DataRow) {
      run?.dataRow(buf, f.start, f.bodyStart, f.end);
      return undefined;
    }
    if (type === MessageType.CopyData) {
      run?.copyData(buf, f.start, f.bodyStart, f.end);
      return undefined;
    }
    const body = buf.subarray(f.bodyStart, f.end);
    switch (type) {
      case MessageType.CopyOutResponse:
        run?.copyOut(new BodyReader(body, 'CopyOutResponse').byte() === 1);
        return undefined;
      case MessageType.RowDescription: {
        const fields = decodeRowDescription(body);
        if (front?.kind === 'describe') {
          if (front.portal) front.portal.fields = fields;
          if (front.statement) front.statement.fields = fields;
          this.expected.shift();
        } else run?.describe(fields);
        return undefined;
      }
      case MessageType.ParameterDescription:
        if (front?.kind === 'describe' && front.statement) front.statement.paramTypes = decodeParameterDescription(body);
        return undefined;
      case MessageType.NoData:
      case MessageType.ParseComplete:
      case MessageType.BindComplete:
      case MessageType.CloseComplete:
        if (front && front.kind !== 'execute' && front.kind !== 'query' && front.kind !== 'sync') {
          this.expected.shift();
          if ('change' in front) this.settle(front.change, 'applied');
        }
        return undefined;
      case MessageType.CommandComplete: {
        const tag = decodeCommandComplete(body).tag;
        run?.commandComplete(tag);
        if (SQL_PREPARED.test(tag)) this.preparedBySql();
        if (TRANSACTION_CONTROL.test(tag)) {
          // What ran before is now part of an explicit transaction, or committed, or rolled back
          // by a statement the log shows: from here until the next Sync, record at once.
          this.implicitTransaction = false;
          this.recordUncommitted();
        }
        if (front?.kind === 'execute') this.endFront();
        return undefined;
      }
      case MessageType.EmptyQueryResponse:
      case MessageType.PortalSuspended:
        if (front?.kind === 'execute') this.endFront();
        return undefined;
      case MessageType.ErrorResponse:
        return this.onError(body);
      case MessageType.ReadyForQuery:
        this.recordUncommitted(); // committed, or (after an error) already marked rolled back
        this.implicitTransaction = decodeReadyForQuery(body) === 'I';
        if (front?.kind === 'query') this.endFront();
        else if (front?.kind === 'sync') this.expected.shift();
        return undefined;
      case MessageType.BackendKeyData:
        return null; // upstream's key must never reach the client
      case MessageType.ParameterStatus: {
        // SET client_encoding (or set_config) to an encoding the record cannot follow ends the session.
        const p = decodeParameterStatus(body);
        if (p.name === 'client_encoding' && unfaithfulEncoding(p.value)) {
          this.protocolError(`client_encoding ${p.value.slice(0, 40)} is not supported through hoop (statements could not be recorded faithfully); use UTF8`);
          return null;
        }
        return undefined;
      }
      default:
        return undefined; // notices, notifications, ParameterStatus, CopyIn/Done, FunctionCallResponse
    }
  }

  private onError(body: Buffer): Buffer | undefined {
    const fields = decodeNoticeFields(body);
    const error = { code: fields.C ?? 'XX000', message: fields.M ?? 'error' };
    if (fields.V === 'FATAL' || fields.V === 'PANIC' || fields.S === 'FATAL' || fields.S === 'PANIC') this.upstreamFatal = error.message;
    const front = this.expected[0];
    const refusal = !front || front.kind === 'sync' || front.kind === 'describe' ? null
      : 'run' in front ? front.run.refusal : (front.change.run?.refusal ?? front.change.refusal ?? null);
    // Any error aborts the implicit transaction: what completed in it is undone.
    for (const run of this.uncommitted) run.rolledBack(refusal ?? error);
    this.recordUncommitted();
    if (!front || front.kind === 'sync') return undefined;
    if (front.kind === 'query') {
      front.run.fail(error);
      return front.run.refusal ? refusalResponse(front.run.refusal) : undefined;
    }
    // Extended protocol: the server now discards everything up to the next Sync.
    if (front.kind === 'execute') front.run.fail(error);
    this.expected.shift();
    if (front.kind === 'execute') this.endRun(front.run);
    if ('change' in front) this.settle(front.change, 'failed', error);
    while (this.expected.length > 0 && this.expected[0]!.kind !== 'sync') {
      const skipped = this.expected.shift()!;
      if ('change' in skipped) this.settle(skipped.change, 'skipped', error);
      if (skipped.kind === 'execute' || skipped.kind === 'query') {
        this.endRun(skipped.run, { code: error.code, message: `not executed: an earlier message in the same pipeline failed: ${error.message}` });
      }
    }
    return refusal ? refusalResponse(refusal) : undefined;
  }

  private applyPortalDescription(e: Extract<Expected, { kind: 'execute' }>): void {
    e.described = true;
    const p = e.portal;
    if (!p) return;
    if (p.fields) e.run.describe(p.fields);
    else {
      e.run.describe(valueOf(p.statementVersion)?.fields ?? null);
      e.run.describe(null, p.resultFormats);
    }
  }

  private endFront(): void {
    const e = this.expected.shift();
    if (e?.kind === 'execute' && this.implicitTransaction) {
      e.run.complete();
      this.uncommitted.push(e.run);
      this.uncommittedBytes += e.run.keptSize;
      while (this.uncommitted.length > MAX_UNCOMMITTED || (this.uncommitted.length > 1 && this.uncommittedBytes > MAX_UNCOMMITTED_BYTES)) {
        const oldest = this.uncommitted.shift()!;
        this.uncommittedBytes -= oldest.keptSize;
        this.endRun(oldest);
      }
    } else if (e && (e.kind === 'execute' || e.kind === 'query')) this.endRun(e.run);
  }

  private recordUncommitted(): void {
    if (this.uncommitted.length === 0) return; // every ReadyForQuery comes here
    this.uncommittedBytes = 0;
    for (const run of this.uncommitted.splice(0)) this.endRun(run);
  }

  private endRun(run: StatementRun, error?: { code: string; message: string }): void {
    if (run.isEnded) return;
    if (error) run.fail(error);
    const end = run.finish();
    safely(() => this.ctx.hooks.queryEnd(end));
  }

  // -------------------------------------------------------------------------------------------
  // ends

  private close(reason: string, error: string | null): void {
    // After a Terminate, whichever side notices the end first, the client ended the session.
    if (!this.endReason) this.endReason = this.terminated ? { reason: 'client-terminated', error: null } : { reason, error };
    this.closing = true;
    this.onSettled?.();
    const socket = this.upstream.socket;
    if (!socket.destroyed && !socket.writableEnded) endStream(socket, this.terminated ? undefined : TERMINATE);
    endStream(this.client);
  }

  private protocolError(message: string): void {
    safely(() => this.ctx.hooks.protocolError({ message }));
    this.endReason ??= { reason: 'protocol-error', error: message };
    this.closing = true;
    this.onSettled?.();
    this.upstream.socket.destroy();
    fatal(this.client, sqlstateOf('HOOP_PROTOCOL'), `hoop: ${message}`);
  }
}

/** Longest Query text split into statements for the record (longer ones are kept whole only). */
const MAX_SPLIT_CHARS = 1024 * 1024;

/** The statements of a Query that holds more than one, else undefined. */
function severalStatements(sql: string): string[] | undefined {
  if (sql.length > MAX_SPLIT_CHARS || !sql.includes(';')) return undefined;
  const statements = splitStatements(sql);
  return statements.length > 1 ? statements : undefined;
}

/** Command tags of statements that begin or end a transaction block. */
const TRANSACTION_CONTROL = /^(BEGIN|START TRANSACTION|COMMIT|ROLLBACK|PREPARE TRANSACTION)$/;

/** Command tags of SQL that defines or drops prepared statements behind the protocol's back. */
const SQL_PREPARED = /^(PREPARE|DEALLOCATE|DISCARD)\b/;

function unknownStatement(name: string): string {
  return `-- prepared statement ${JSON.stringify(name)}: unknown (PREPARE, DEALLOCATE or DISCARD ran in this session; see the statements before)`;
}

/** A Bind of a statement that does not exist: fails before anything is planned or run. */
function poisonBind(portal: string): Buffer {
  return frame(MessageType.Bind, cstring(portal), cstring(`hoop refused ${randomUUID()}`), Buffer.alloc(6));
}

/** A simple-protocol message that fails with a syntax error and changes nothing upstream. */
const POISON_QUERY = frame(MessageType.Query, cstring('hoop refused'));

function refusalOf(err: unknown): { code: string; message: string } {
  // Anything but a deliberate policy refusal means the audit record could not be made: fail closed
  // without leaking the store's internals to the client.
  if (isHoopError(err) && err.code !== 'HOOP_AUDIT_UNAVAILABLE' && err.code !== 'HOOP_STORE' && err.code !== 'HOOP_INTERNAL') {
    return { code: sqlstateOf(err.code), message: `hoop: statement refused: ${err.message}` };
  }
  return { code: sqlstateOf('HOOP_AUDIT_UNAVAILABLE'), message: 'hoop: statement refused: audit log unavailable' };
}

function refusalResponse(r: { code: string; message: string }): Buffer {
  const audit = r.code === sqlstateOf('HOOP_AUDIT_UNAVAILABLE');
  return errorResponse({ severity: 'ERROR', code: r.code, message: r.message, hint: audit ? 'nothing was executed; retry once the gateway can record statements again' : undefined });
}

function notCompleted(message: string): { code: string; message: string } {
  return { code: '08006', message };
}
