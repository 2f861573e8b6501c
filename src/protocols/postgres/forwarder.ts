/**
 * client -> upstream: frames the client's messages, forwards the original bytes in runs, and
 * holds every message that starts work upstream (simple Query, Execute, FunctionCall, a Parse or
 * Bind that is not executed at once) at ONE barrier: plan, hold if the plan says so, make
 * query.start durable, then send the message, or in its place a poison message that fails
 * upstream without side effects (so responses stay in order and the session stays usable).
 *
 * Before it decodes a message the forwarder makes sure it reads it as the server will:
 *  - in the client encoding in force (a statement in flight may change it: wait for its
 *    ReadyForQuery, or refuse non-ASCII text pipelined behind it in the same Sync segment);
 *  - with the names it refers to settled (earlier segments answered; SQL in flight that may
 *    replace named statements or portals completed);
 *  - knowing whether the server is in COPY-in mode or skipping to Sync after an error, where it
 *    ignores messages that would otherwise get a response.
 */
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { ProtocolError } from '../../errors.js';
import type { FinalPlan, HoldPlan, SessionContext, StatementPlan, StatementStart } from '../engine.js';
import type { Catalog, Portal, PreparedStatement } from './catalog.js';
import type { NameTable, Version } from './names.js';
import { isAsciiOnly } from './encodings.js';
import { describeFunctionCall } from './fastpath.js';
import { describeType, type FrameBatch } from './framing.js';
import { drained, write } from './io.js';
import { Carried, boundNext, coveredBind, executedNext } from './lookahead.js';
import {
  BodyReader,
  MessageType,
  decodeBind,
  decodeExecute,
  decodeFunctionCall,
  decodeTarget,
  frame,
  noticeResponse,
} from './messages.js';
import { POISON_QUERY, poisonBind, poisonExecute, poisonParse, refusalOf } from './poison.js';
import { StatementReader, UNREAD_REST, omittedValue, preparedText, textFields } from './reading.js';
import type { Relay } from './relay.js';
import { notExecuted, running, type Failure, type ResponseQueue, type Running } from './responses.js';
import { StatementRun } from './results.js';
import { readsDifferentlyWithoutStandardConformingStrings, splitDependsOnStandardConformingStrings, splitStatements } from './split.js';
import { SQLSTATE_QUERY_CANCELED } from './sqlstate.js';
import { ALL_RISKS, NO_RISKS, cstringAt, lowerAscii, risksOf, type Risks } from './text.js';

const FLUSH = frame(MessageType.Flush);
/** Longest Query text split into statements for the record (longer ones are kept whole only). */
const MAX_SPLIT_CHARS = 1024 * 1024;
/** Statement texts up to this size are read and hashed without yielding to other sessions. */
const SMALL_TEXT = 64 * 1024;
/** character_not_in_repertoire: text the gateway cannot read as the server will. */
const SQLSTATE_BAD_TEXT = '22021';
/** feature_not_supported: a text hoop cannot read as the server will (standard_conforming_strings off). */
const SQLSTATE_READ_OTHERWISE = '0A000';
const BACKSLASH = 0x5c;
/** A held statement (or one about to be) that the client cancelled. */
const HOLD_CANCELLED: FinalPlan = { action: 'refuse', code: '42501', message: 'hoop: the held statement was cancelled before a decision (it did not run)' };
/** What a statement cancelled before it went upstream gets: PostgreSQL's own cancel error. */
const CANCELLED_UNSENT: Failure = { code: SQLSTATE_QUERY_CANCELED, message: 'canceling statement due to user request (hoop: before it was sent to the database; it did not run)' };

/** A statement about to pass the barrier. */
interface Unit {
  kind: 'query' | 'function' | 'execute' | 'parse' | 'bind';
  start: Omit<StatementStart, 'queryId'>;
  lowerSql: string;
  risks: Risks;
  /** Where a `run` plan is cached (the prepared statement an Execute runs). */
  cache?: PreparedStatement;
  /** The message sent upstream in place of the statement when it is refused. */
  poison(): Buffer;
  /** Execute: its portal. Parse/Bind recorded on their own: how to register the change. */
  portal?: { name: string; value: Portal | null };
  register?: (run: StatementRun) => void;
  /** Set up the run before its responses arrive. */
  prepare?: (run: StatementRun) => void;
  /** The engine itself refuses it, whatever the plan says. */
  refusal?: Failure;
}

export interface ForwarderHost {
  readonly ctx: SessionContext;
  readonly catalog: Catalog;
  readonly queue: ResponseQueue;
  readonly relay: Relay;
  readonly upstream: Duplex;
  /** The session is ending: nothing more goes upstream. */
  readonly closing: boolean;
  /** A cancel the server has not taken yet (Session.pendingCancel): statements wait for it. */
  readonly pendingCancel: Promise<void> | null;
  endRun(run: StatementRun, error?: Failure): void;
  terminated(): void;
  /** Called when the queue moves; the forwarder waits on it. */
  onChange(listener: (() => void) | null): void;
}

export class Forwarder {
  /** Frames from a Parse or Bind on, kept until the next chunk shows whether an Execute follows. */
  private readonly carried = new Carried();
  /** The Sync segment (queue.segment) in which an Execute that may change settings was sent. */
  private segmentMayChangeSettings = -1;
  /** A statement in flight that may still enter COPY-in mode. */
  private copyPending: Running | null = null;
  /** Ends a hold with a refusal (a CancelRequest from the client). */
  private cancelHold: (() => void) | null = null;
  /** A statement is between its barrier's start and its bytes going upstream; and whether a
   *  CancelRequest came meanwhile (it is then refused there: cancelUnsent). */
  private unsent = false;
  private unsentCancelled = false;

  private readonly reader: StatementReader;

  constructor(private readonly host: ForwarderHost) {
    this.reader = new StatementReader(host.queue, host.catalog, host.ctx.payloadLimit);
  }

  /** A CancelRequest for this session: true if it ended a held statement (nothing goes upstream). */
  cancelHeld(): boolean {
    if (!this.cancelHold) return false;
    this.cancelHold();
    return true;
  }

  /**
   * A CancelRequest for this session while a statement waits at its barrier (its plan, its
   * query.start being made durable) with no statement ahead of it: true if so. That statement is
   * what the client is waiting on, and it is refused with PostgreSQL's own cancel error instead
   * of being sent, so a Ctrl-C right after Enter never loses the race with the record's fsync
   * and leaves the statement to run in full. With a statement ahead (a pipeline), the cancel is
   * for that one, upstream, as PostgreSQL would take it.
   */
  cancelUnsent(): boolean {
    if (!this.unsent || this.host.queue.expected.some((e) => 's' in e)) return false;
    this.unsentCancelled = true;
    return true;
  }

  /** A new chunk of client bytes, framed. */
  push(batch: FrameBatch): void | Promise<void> {
    return this.forward(this.carried.before(batch));
  }

  /** Sends what is held before frames[i] and keeps frames[i..] to be read again with the next chunk. */
  private carry(batch: FrameBatch, i: number, runStart: number): void | Promise<void> {
    this.carried.keep(batch, i);
    const from = batch.frames[i]!.start;
    if (runStart < from) write(this.host.upstream, batch.buffer.subarray(runStart, from));
    return drained(this.host.upstream);
  }

  /**
   * Forwards a batch of client frames as original bytes. At a barrier the bytes so far are held,
   * not sent, until the statement is recorded: order is kept, and a pipelined
   * Parse/Bind/Execute/Sync still leaves in one write.
   */
  forward(batch: FrameBatch, from = 0, held?: number): void | Promise<void> {
    const { queue } = this.host;
    const buf = batch.buffer;
    const frames = batch.frames;
    let runStart = held ?? frames[from]?.start ?? 0;
    for (let i = from; i < frames.length; i++) {
      if (this.host.closing) return;
      const f = frames[i]!;
      const type = f.type;
      if (queue.copyIn) {
        runStart = this.duringCopyIn(batch, i, runStart);
        continue;
      }
      if (this.copyPending && !this.settledCopy() && type !== MessageType.Terminate) {
        return this.waitThen(batch, i, runStart, () => this.settledCopy());
      }
      if (queue.skippingToSync && type !== MessageType.Sync && type !== MessageType.Terminate) {
        // The server discards it unanswered: it never goes, so nothing expects an answer.
        write(this.host.upstream, buf.subarray(runStart, f.start));
        runStart = f.end;
        continue;
      }
      const body = buf.subarray(f.bodyStart, f.end);
      switch (type) {
        case MessageType.Query:
          return this.query(batch, i, runStart, body);
        case MessageType.FunctionCall:
          return this.functionCall(batch, i, runStart, body);
        case MessageType.Execute: {
          if (queue.unsettledBeforeLastSync()) return this.waitThen(batch, i, runStart, () => !queue.unsettledBeforeLastSync());
          const portal = decodeExecute(body).portal;
          if (portal !== '' && queue.nameRisks > 0) return this.waitThen(batch, i, runStart, () => queue.nameRisks === 0);
          return this.execute(batch, i, runStart, portal);
        }
        case MessageType.Parse: {
          const waiting = this.textGate(batch, i, runStart, body);
          if (waiting !== true) return waiting;
          const named = body[0] !== 0;
          const next = named ? 'no' : boundNext(batch, i);
          if (next === 'undecided') return this.carry(batch, i, runStart);
          if (next === 'no' || body.length > SMALL_TEXT) return this.parse(batch, i, runStart, body, next === 'no');
          // The common case: an unnamed Parse bound and executed at once, recorded with the Execute.
          const p = this.reader.smallParse(body);
          if (!p) return this.refuseText(batch, i, runStart, 'parse', '');
          const otherwise = this.readOtherwise(batch, i, runStart, body, p.sql, body);
          if (otherwise instanceof Promise) return otherwise;
          if (otherwise !== null) return this.refuseText(batch, i, runStart, 'parse', '', otherwise, { code: SQLSTATE_READ_OTHERWISE, statement: p.sql });
          const version = this.host.catalog.statements.define('', p);
          queue.expectChange('parse', this.host.catalog.statements, version, true);
          break;
        }
        case MessageType.Bind: {
          if (queue.unsettledBeforeLastSync()) return this.waitThen(batch, i, runStart, () => !queue.unsettledBeforeLastSync());
          const b = decodeBind(body);
          if (b.statement !== '' && queue.nameRisks > 0) return this.waitThen(batch, i, runStart, () => queue.nameRisks === 0);
          const waiting = this.textGate(batch, i, runStart, body);
          if (waiting !== true) return waiting;
          const portal = this.reader.portal(b);
          if (!portal) return this.refuseText(batch, i, runStart, 'bind', b.portal);
          // Bind plans the statement, and planning runs functions (constant folding, estimates):
          // a Bind not executed right away is recorded on its own, before it is sent.
          const next = executedNext(batch, i, b.portal);
          if (next === 'undecided') return this.carry(batch, i, runStart);
          if (next === 'no') return this.bindBarrier(batch, i, runStart, b.portal, portal);
          queue.expectChange('bind', this.host.catalog.portals, this.host.catalog.portals.define(b.portal, portal), false, { portal: b.portal });
          break;
        }
        case MessageType.Describe: {
          const t = decodeTarget(body, 'Describe');
          const { catalog } = this.host;
          queue.expect({
            kind: 'describe',
            statement: t.kind === 'S' ? (catalog.statements.get(t.name) ?? null) : null,
            portal: t.kind === 'P' ? (catalog.portals.get(t.name) ?? null) : null,
          });
          break;
        }
        case MessageType.Close: {
          const t = decodeTarget(body, 'Close');
          const { catalog } = this.host;
          if (t.kind === 'S') queue.expectChange('close', catalog.statements, catalog.statements.define(t.name, undefined), false);
          else queue.expectChange('close', catalog.portals, catalog.portals.define(t.name, undefined), false);
          break;
        }
        case MessageType.Sync:
          queue.expectSync();
          break;
        case MessageType.Terminate:
          this.host.terminated();
          break;
        default:
          break; // Flush, and CopyData/CopyDone/CopyFail outside COPY (the server ignores them)
      }
    }
    const last = frames[frames.length - 1];
    if (last) write(this.host.upstream, buf.subarray(runStart, last.end));
    return drained(this.host.upstream);
  }

  /** In COPY-in mode the server reads only CopyData, CopyDone and CopyFail; it ignores Flush and Sync. */
  private duringCopyIn(batch: FrameBatch, i: number, runStart: number): number {
    const f = batch.frames[i]!;
    switch (f.type) {
      case MessageType.CopyData:
        this.host.queue.copyIn!.run.uploaded(batch.buffer, f.start, f.bodyStart, f.end);
        return runStart;
      case MessageType.CopyDone:
        this.host.queue.copyIn!.run.copyDone();
        this.host.queue.copyInEnded();
        return runStart;
      case MessageType.CopyFail:
        this.host.queue.copyIn!.run.copyFail(batch.buffer, f.start, f.bodyStart, f.end);
        this.host.queue.copyInEnded();
        return runStart;
      case MessageType.Flush:
      case MessageType.Sync:
        // Ignored by the server here: dropped, so nothing waits for a ReadyForQuery it never sends.
        write(this.host.upstream, batch.buffer.subarray(runStart, f.start));
        return f.end;
      default:
        throw new ProtocolError(`message type ${describeType(f.type)} during COPY FROM STDIN (only CopyData, CopyDone or CopyFail may follow)`);
    }
  }

  /** Whether the statement that might enter COPY-in did, or is over. */
  private settledCopy(): boolean {
    const s = this.copyPending;
    if (!s) return true;
    if (this.host.queue.copyIn === s) return true;
    if (this.host.queue.expected.some((e) => 's' in e && e.s === s)) return false;
    this.copyPending = null;
    return true;
  }

  /**
   * Waits until `ready` holds, then goes on from frames[i]. What is held before frames[i] goes
   * first (it passed the barrier already), except a Bind that an Execute at frames[i] covers: it
   * is recorded with that Execute. With `flush`, a Flush follows: the server sends what it owes
   * without waiting for a Sync, so nothing deadlocks.
   */
  private async waitThen(batch: FrameBatch, i: number, runStart: number, ready: () => boolean, flush = true): Promise<void> {
    const f = batch.frames[i]!;
    const bind = f.type === MessageType.Execute ? coveredBind(batch, i, runStart) : -1;
    const upTo = bind >= 0 ? batch.frames[bind]!.start : f.start;
    write(this.host.upstream, batch.buffer.subarray(runStart, upTo));
    if (flush) write(this.host.upstream, FLUSH);
    await new Promise<void>((resolve) => {
      const check = () => {
        if (this.host.closing || ready()) {
          this.host.onChange(null);
          resolve();
        }
      };
      this.host.onChange(check);
      check();
    });
    if (this.host.closing) return;
    const rest = this.forward(batch, i, upTo);
    if (rest) await rest;
  }

  // -------------------------------------------------------------------------------------------
  // text, as the server will read it

  /**
   * Whether the text of the message at i can be read now: true, or a promise that resumes once
   * it can (or refuses it). ASCII reads the same in every encoding the gateway allows.
   */
  private textGate(batch: FrameBatch, i: number, runStart: number, body: Buffer): true | Promise<void> {
    if (isAsciiOnly(body)) return true;
    return this.settingsKnown(batch, i, runStart, body, 'it holds non-ASCII text');
  }

  /**
   * Whether client_encoding and standard_conforming_strings as the server will read frames[i]
   * are known: true, or a promise that resumes once they are (or refuses the message). Anything
   * answered by a ReadyForQuery still to come may have changed them (a SET, a COMMIT or ROLLBACK
   * undoing one, a function's set_config): the report comes with that ReadyForQuery, so wait for
   * every boundary sent. Inside an open Sync segment there is no report to wait for: behind a
   * statement whose text may change them, the message is refused.
   */
  private settingsKnown(batch: FrameBatch, i: number, runStart: number, body: Buffer, what: string): true | Promise<void> {
    const { queue } = this.host;
    if (queue.answeredBoundaries < queue.sentBoundaries) {
      const sent = queue.sentBoundaries;
      return this.waitThen(batch, i, runStart, () => queue.answeredBoundaries >= sent, false);
    }
    if (this.segmentMayChangeSettings !== queue.segment) return true;
    const f = batch.frames[i]!;
    const kind = f.type === MessageType.Parse ? 'parse' : f.type === MessageType.Bind ? 'bind' : 'query';
    return this.refuseText(batch, i, runStart, kind, kind === 'query' ? '' : new BodyReader(body, 'Parse').cstring(),
      `${what} and follows, in the same Sync segment, a statement that may change client_encoding or standard_conforming_strings; send a Sync first`);
  }

  /**
   * Why the server will read a statement's text otherwise than hoop reads it, or null when it
   * reads it the same; a promise that resumes once the setting that decides it is known. With
   * standard_conforming_strings off, a backslash in a '…' literal escapes (`'q\' AS x, '` is one
   * literal), while the policy's parser, the risk checks and the record read the text as the
   * server does with it on: `SELECT 'q\' AS x, ' AS y, credit_score FROM customers -- '` would be
   * analysed as two literals. Such a text is refused, never guessed at. `sql` null: the text was
   * cut at the limit, so any backslash in `bytes` counts.
   */
  private readOtherwise(batch: FrameBatch, i: number, runStart: number, body: Buffer, sql: string | null, bytes: Buffer): string | null | Promise<void> {
    if (!bytes.includes(BACKSLASH)) return null;
    if (sql !== null && !readsDifferentlyWithoutStandardConformingStrings(sql)) return null;
    const known = this.settingsKnown(batch, i, runStart, body, 'a backslash in it reads differently depending on standard_conforming_strings');
    if (known !== true) return known;
    if (this.host.queue.standardConformingStrings) return null;
    return "hoop: statement refused: standard_conforming_strings is off, and this text holds a backslash in a '…' literal, which the server would read as an escape where hoop's analysis does not; write E'…' for escapes, or SET standard_conforming_strings = on";
  }

  /** A statement was sent that may change the encoding: text after it waits for its ReadyForQuery. */
  private noteRisks(unit: Unit, running: Running): void {
    const { queue } = this.host;
    // (a Query or FunctionCall is a boundary of its own: what follows waits for its ReadyForQuery)
    if (unit.risks.settings && unit.kind !== 'query' && unit.kind !== 'function') this.segmentMayChangeSettings = queue.segment;
    if (unit.kind !== 'parse' && unit.kind !== 'bind' && unit.risks.copyIn) this.copyPending = running;
  }

  /** A Parse that is recorded on its own (`alone`), or too large to read without yielding. */
  private async parse(batch: FrameBatch, i: number, runStart: number, body: Buffer, alone: boolean): Promise<void> {
    const p = await this.reader.parse(body);
    if (!p.statement) return this.refuseText(batch, i, runStart, 'parse', p.name);
    const otherwise = this.readOtherwise(batch, i, runStart, body, p.statement.sql, body);
    if (otherwise instanceof Promise) return otherwise;
    if (otherwise !== null) return this.refuseText(batch, i, runStart, 'parse', p.name, otherwise, { code: SQLSTATE_READ_OTHERWISE, statement: p.statement.sql });
    if (alone) return this.parseBarrier(batch, i, runStart, { name: p.name, statement: p.statement });
    const { catalog, queue } = this.host;
    queue.expectChange('parse', catalog.statements, catalog.statements.define(p.name, p.statement), p.name === '');
    const rest = this.forward(batch, i + 1, runStart);
    if (rest) await rest;
  }

  // -------------------------------------------------------------------------------------------
  // the statements

  private async query(batch: FrameBatch, i: number, runStart: number, body: Buffer): Promise<void> {
    const waiting = this.textGate(batch, i, runStart, body);
    if (waiting !== true) return waiting;
    const bytes = cstringAt(body, 0, body.length);
    if (!bytes) throw new ProtocolError('malformed Query message: unterminated query string');
    const text = await this.reader.text(bytes);
    if (!text) return this.refuseText(batch, i, runStart, 'query');
    const otherwise = this.readOtherwise(batch, i, runStart, body, text.truncated ? null : text.text, bytes);
    if (otherwise instanceof Promise) return otherwise;
    let statements: string[] | undefined;
    if (!text.truncated && text.text.length <= MAX_SPLIT_CHARS && text.text.includes(';')) {
      // The server lexes the whole Query with the standard_conforming_strings in force when it
      // arrives; a statement still in flight may change that.
      const { queue } = this.host;
      if (splitDependsOnStandardConformingStrings(text.text)) {
        const known = this.settingsKnown(batch, i, runStart, body, 'its statements split differently depending on standard_conforming_strings');
        if (known !== true) return known;
      }
      const split = splitStatements(text.text, { standardConformingStrings: queue.standardConformingStrings });
      if (split.length > 1) statements = split;
    }
    return this.barrier(batch, i, runStart, {
      kind: 'query',
      start: {
        protocol: 'simple', ...textFields(text), statementName: null, portal: null, parameters: [], ...(statements ? { statements } : {}),
        // What the record cuts off, policy may still need to look through (the frame is whole here).
        ...(text.truncated ? { matchesWhole: (pattern: RegExp) => pattern.test(bytes.toString('latin1')) } : {}),
      },
      ...(text.truncated ? { lowerSql: UNREAD_REST, risks: ALL_RISKS } : withRisks(lowerAscii(bytes))),
      ...(otherwise === null ? {} : { refusal: { code: SQLSTATE_READ_OTHERWISE, message: otherwise } }),
      poison: () => POISON_QUERY,
    });
  }

  /**
   * Fastpath FunctionCall (libpq's large objects): recorded with the function's name and
   * arguments. Only the builtins libpq calls this way are let through: for any other OID the
   * gateway could not name what runs.
   */
  private functionCall(batch: FrameBatch, i: number, runStart: number, body: Buffer): Promise<void> {
    const call = decodeFunctionCall(body);
    const described = describeFunctionCall(call.oid, call.formats, call.values);
    let kept = 0;
    const parameters = described.parameters.map((p, k) => {
      const v = call.values[k];
      kept += v?.length ?? 0;
      return v && kept > this.host.ctx.payloadLimit ? omittedValue(v) : p; // lo_write of a large object, say
    });
    const name = described.name;
    return this.barrier(batch, i, runStart, {
      kind: 'function',
      start: { protocol: 'fastpath', statement: described.statement, statementName: null, portal: null, parameters, ...(name ? {} : { unknown: true }) },
      lowerSql: '',
      risks: NO_RISKS,
      ...(name ? {} : { refusal: { code: '42501', message: `hoop: statement refused: a fastpath call of function OID ${call.oid}, which is not one of the large-object functions hoop can name` } }),
      poison: () => POISON_QUERY,
      prepare: (run) => run.functionCall(name ?? `oid ${call.oid}`, call.resultFormat === 1),
    });
  }

  private execute(batch: FrameBatch, i: number, runStart: number, name: string): Promise<void> {
    const { catalog } = this.host;
    const portal = catalog.portals.get(name) ?? null;
    const text = portal ? catalog.textOf(name, portal) : { sql: '', unknown: false };
    const statement = portal ? catalog.statementOf(portal) : undefined;
    return this.barrier(batch, i, runStart, {
      kind: 'execute',
      start: {
        protocol: 'extended',
        statement: text.sql,
        statementName: portal ? portal.statementName : null,
        portal: name,
        parameters: portal?.parameters ?? [],
        ...(text.unknown ? { unknown: true } : statement ? preparedText(statement) : {}),
      },
      ...(text.unknown ? { lowerSql: UNREAD_REST, risks: ALL_RISKS } : statement ? { lowerSql: statement.lower ?? '', risks: risksOfStatement(statement) } : { lowerSql: '', risks: NO_RISKS }),
      ...(statement && !text.unknown && !portal?.unknown ? { cache: statement } : {}),
      poison: () => poisonExecute((n) => this.host.catalog.portals.get(n) !== undefined),
      portal: { name, value: portal },
    });
  }

  /**
   * A Parse recorded on its own: a named statement can be run by SQL (`EXECUTE name`), and a
   * Parse with no Execute still shows the schema (a Describe of it). If it cannot be recorded,
   * a Parse that fails upstream goes instead, so the name is never defined.
   */
  private parseBarrier(batch: FrameBatch, i: number, runStart: number, p: { name: string; statement: PreparedStatement }): Promise<void> {
    const { catalog, queue } = this.host;
    return this.barrier(batch, i, runStart, {
      kind: 'parse',
      start: { protocol: 'extended', phase: 'parse', statement: p.statement.sql, statementName: p.name, portal: null, parameters: [], ...preparedText(p.statement) },
      lowerSql: p.statement.lower ?? '',
      risks: risksOfStatement(p.statement),
      cache: p.statement,
      poison: () => poisonParse(p.name),
      register: (run) => {
        const version = catalog.statements.define(p.name, p.statement);
        queue.expectChange('parse', catalog.statements, version, p.name === '', { run });
      },
    });
  }

  /** A Bind recorded on its own; if it cannot be, a Bind that fails before planning goes instead. */
  private bindBarrier(batch: FrameBatch, i: number, runStart: number, name: string, portal: Portal): Promise<void> {
    const { catalog, queue } = this.host;
    const text = catalog.textOf(name, { ...portal, unknown: false });
    const bound = catalog.statementOf(portal);
    return this.barrier(batch, i, runStart, {
      kind: 'bind',
      start: { protocol: 'extended', phase: 'bind', statement: text.sql, statementName: portal.statementName, portal: name, parameters: portal.parameters, ...(text.unknown ? { unknown: true } : {}) },
      ...(bound ? { lowerSql: bound.lower ?? '', risks: risksOfStatement(bound) } : { lowerSql: '', risks: NO_RISKS }),
      poison: () => poisonBind(name),
      register: (run) => {
        queue.expectChange('bind', catalog.portals, catalog.portals.define(name, portal), false, { run, portal: name });
      },
    });
  }

  /**
   * THE barrier, for every statement: plan (hold if asked), make query.start durable, then send
   * the bytes held since `runStart` and the message itself, or its poison if refused; then the
   * rest of the batch continues.
   */
  private async barrier(batch: FrameBatch, i: number, runStart: number, unit: Unit): Promise<void> {
    const { ctx, queue } = this.host;
    const f = batch.frames[i]!;
    const start: StatementStart = { queryId: randomUUID(), ...unit.start };
    this.unsent = true;
    this.unsentCancelled = false;
    const decided = unit.refusal ? { action: 'refuse' as const, ...unit.refusal } : this.decide(unit, start);
    const decision: FinalPlan = decided instanceof Promise ? await decided : decided;
    let refusal: Failure | null = decision.action === 'refuse' ? { code: decision.code, message: decision.message } : null;
    try {
      await ctx.hooks.queryStart(start, decision);
    } catch (err) {
      refusal = refusalOf(err);
    }
    this.unsent = false;
    if (this.unsentCancelled && !refusal) refusal = CANCELLED_UNSENT;
    const run = new StatementRun(start, ctx.payloadLimit, refusal);
    const decoder = this.reader.decoder();
    if (decoder && decoder.name !== 'UTF8') run.clientText = (b) => decoder.decode(b);
    unit.prepare?.(run);
    if (this.host.closing) return this.host.endRun(run, { code: '08006', message: 'the session ended before the statement was sent' });
    if (queue.skippingToSync) {
      // An earlier message failed while this one waited: the server would discard it.
      write(this.host.upstream, batch.buffer.subarray(runStart, f.start));
      this.host.endRun(run, notExecuted({ code: '25P02', message: 'the server skips messages until Sync after an error' }));
      return this.continueAfter(batch, i, f.end);
    }
    const s = running(run, refusal ? { action: 'refuse', ...refusal } : decision, unit.lowerSql, !refusal && unit.risks.names);
    if (s.plan.action === 'run' && s.plan.rowsBefore) s.rows = s.plan.rowsBefore();
    try {
      if (unit.register) unit.register(run);
      else if (unit.kind === 'execute') {
        const portal = unit.portal!.value;
        s.rows += portal?.rowsReturned ?? 0; // a suspended portal's result goes on: so does the row cap's count
        queue.expect({ kind: 'execute', s, portal, portalName: unit.portal!.name, described: false });
      }
      else queue.expectQuery(unit.kind as 'query' | 'function', unit.kind === 'query' ? this.dropsUnnamed(s) : s);
    } catch (err) {
      this.host.endRun(run, { code: '08006', message: 'the statement was not sent: the session ended on a protocol error' });
      throw err;
    }
    if (this.host.pendingCancel) await this.host.pendingCancel;
    if (refusal) {
      write(this.host.upstream, Buffer.concat([this.heldWithoutCoveredBind(batch, i, runStart, refusal, unit), unit.poison()]));
      return this.continueAfter(batch, i, f.end);
    }
    this.noteRisks(unit, s);
    return this.continueAfter(batch, i, runStart);
  }

  /** Any Query the server runs (the poison one too) first drops the unnamed statement and portal. */
  private dropsUnnamed(s: Running): Running {
    const { catalog } = this.host;
    s.dropsUnnamed = [
      { table: catalog.statements as NameTable<unknown>, version: catalog.statements.define('', undefined) as Version<unknown> },
      { table: catalog.portals as NameTable<unknown>, version: catalog.portals.define('', undefined) as Version<unknown> },
    ];
    return s;
  }

  private async continueAfter(batch: FrameBatch, i: number, runStart: number): Promise<void> {
    await drained(this.host.upstream);
    const rest = this.forward(batch, i + 1, runStart);
    if (rest) await rest;
  }

  /** The plan for a statement: cached per prepared statement, a hold waited out; a plan known
   *  at once is returned at once (no turn of the event loop on the hot path). */
  private decide(unit: Unit, start: StatementStart): FinalPlan | Promise<FinalPlan> {
    const cached = unit.cache?.plan;
    if (cached && (cached.action !== 'run' || cached.stillValid?.() !== false)) return cached;
    let planned: StatementPlan | Promise<StatementPlan>;
    try {
      planned = this.host.ctx.hooks.plan(start);
    } catch (err) {
      return { action: 'refuse', ...refusalOf(err) };
    }
    if (planned instanceof Promise) return planned.then((p) => this.settlePlan(unit, p), (err: unknown) => ({ action: 'refuse' as const, ...refusalOf(err) }));
    return this.settlePlan(unit, planned);
  }

  private settlePlan(unit: Unit, plan: StatementPlan): FinalPlan | Promise<FinalPlan> {
    if (plan.action === 'hold') return this.hold(plan);
    if (plan.action === 'run' && !plan.once && unit.cache && unit.kind !== 'bind') unit.cache.plan = plan;
    return plan;
  }

  /** A held statement: the client is told why it waits; everything behind it waits in order. */
  private hold(plan: HoldPlan): FinalPlan | Promise<FinalPlan> {
    if (this.unsentCancelled) { // cancelled while it was being planned (a row estimate): never held
      plan.cancelled?.();
      return HOLD_CANCELLED;
    }
    this.host.relay.inject(noticeResponse({ code: '00000', message: plan.notice }));
    return new Promise<FinalPlan>((resolve) => {
      let settled = false;
      const settle = (p: FinalPlan) => {
        // Once: a decision that comes after a cancel must not touch what the forwarder does next.
        if (settled) return;
        settled = true;
        this.cancelHold = null;
        this.host.onChange(null);
        resolve(p);
      };
      this.cancelHold = () => {
        plan.cancelled?.();
        settle(HOLD_CANCELLED);
      };
      this.host.onChange(() => {
        if (this.host.closing) settle({ action: 'refuse', code: '08006', message: 'hoop: the session ended while the statement was held' });
      });
      plan.decision.then(settle, (err: unknown) => settle({ action: 'refuse', ...refusalOf(err) }));
    });
  }

  /**
   * The bytes held before frames[i]; for a refused Execute, the Bind it covers is replaced by one
   * that fails before planning (planning runs functions), and the client gets the refusal for it.
   */
  private heldWithoutCoveredBind(batch: FrameBatch, i: number, runStart: number, refusal: Failure, unit: Unit): Buffer {
    const f = batch.frames[i]!;
    const bind = unit.kind === 'execute' ? coveredBind(batch, i, runStart) : -1;
    if (bind < 0) return batch.buffer.subarray(runStart, f.start);
    const b = batch.frames[bind]!;
    const change = [...this.host.queue.expected].reverse().find((e) => e.kind === 'bind');
    if (change && 'change' in change) change.change.refusal = refusal;
    return Buffer.concat([batch.buffer.subarray(runStart, b.start), poisonBind(unit.portal!.name), batch.buffer.subarray(b.end, f.start)]);
  }

  /**
   * Text the gateway cannot read as the server will: the message is refused in place. A Parse or
   * Bind is replaced by one of the same name that fails upstream (the unnamed statement is dropped
   * by a failed Parse, as by any), a Query by the poison Query.
   */
  private async refuseText(batch: FrameBatch, i: number, runStart: number, kind: 'query' | 'parse' | 'bind', name = '', why?: string, read?: { code: string; statement: string }): Promise<void> {
    const { catalog, queue, ctx } = this.host;
    const encoding = queue.clientEncoding;
    const refusal = read ? { code: read.code, message: why! } : { code: SQLSTATE_BAD_TEXT, message: `hoop: statement refused: ${why ?? `its text is not valid ${encoding}, or hoop cannot read ${encoding} faithfully`}` };
    const f = batch.frames[i]!;
    const start: StatementStart = { queryId: randomUUID(), protocol: kind === 'query' ? 'simple' : 'extended', statement: read?.statement ?? `-- not readable in client_encoding ${encoding}`, statementName: kind === 'parse' ? name : null, portal: kind === 'bind' ? name : null, parameters: [], unknown: true };
    const run = new StatementRun(start, ctx.payloadLimit, refusal);
    try {
      await ctx.hooks.queryStart(start, { action: 'refuse', ...refusal });
    } catch {
      // Refused either way: nothing of it reaches the server.
    }
    if (this.host.closing) return;
    let poison: Buffer;
    if (kind === 'query') {
      queue.expectQuery('query', this.dropsUnnamed(running(run, { action: 'refuse', ...refusal })));
      poison = POISON_QUERY;
    } else if (kind === 'parse') {
      queue.expectChange('parse', catalog.statements, catalog.statements.define(name, undefined), name === '', { run });
      poison = poisonParse(name);
    } else {
      queue.expectChange('bind', catalog.portals, catalog.portals.define(name, undefined), false, { run, portal: name });
      poison = poisonBind(name);
    }
    write(this.host.upstream, Buffer.concat([batch.buffer.subarray(runStart, f.start), poison]));
    return this.continueAfter(batch, i, f.end);
  }

}

function withRisks(lowerSql: string): { lowerSql: string; risks: Risks } {
  return { lowerSql, risks: risksOf(lowerSql) };
}

/** A prepared statement's risks, worked out once; an unknown one may do anything. */
function risksOfStatement(s: PreparedStatement): Risks {
  if (s.unknown) return ALL_RISKS;
  return (s.risks ??= risksOf(s.lower ?? ''));
}
