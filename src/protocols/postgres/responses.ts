/**
 * What the upstream owes, in order: one entry per frontend message that gets a response, matched
 * FIFO to the backend messages as they arrive, so every response is accounted to the statement
 * that caused it. It also models the server's own state where that decides what a later message
 * means: skipping to Sync after an error, COPY-in mode, the implicit transaction's fate, and the
 * client_encoding and standard_conforming_strings reported at each ReadyForQuery.
 */
import type { FinalPlan } from '../engine.js';
import { ProtocolError } from '../../errors.js';
import type { Catalog, Portal, PreparedStatement } from './catalog.js';
import type { FieldDescription } from './messages.js';
import type { NameTable, Version } from './names.js';
import type { StatementRun } from './results.js';
import { SQLSTATE_QUERY_CANCELED } from './sqlstate.js';
import type { CopyLayout } from './copy-out.js';
import type { Transforms } from './transform.js';

export interface Failure { code: string; message: string }

/**
 * A Parse/Bind/Close not yet answered: the server may still refuse or skip it (names.ts).
 * `segment` counts the Syncs the client had sent before it.
 */
export interface Change {
  table: NameTable<PreparedStatement> | NameTable<Portal>;
  version: Version<PreparedStatement> | Version<Portal>;
  /** A failed Parse of the unnamed statement has already dropped the previous one. */
  clearOnFailure: boolean;
  segment: number;
  /** A Parse or Bind recorded on its own. */
  run?: StatementRun;
  /** A Bind withheld because the Execute it was for was refused: the client gets this error. */
  refusal?: Failure | null;
  /** The portal a Bind defines (an error in it belongs to the Execute that follows). */
  portal?: string;
}

/** A statement in flight: its run, the decision it runs under, and its result-column state. */
export interface Running {
  run: StatementRun;
  plan: FinalPlan;
  /** Rows (DataRow or COPY OUT data) sent so far, for the plan's row cap. */
  rows: number;
  /** Transforms for the current result set's columns, once described. */
  transforms: Transforms | null;
  formats: number[];
  /** The statement text, lower-cased ASCII view (COPY options, name risks). */
  lowerSql: string;
  /** It may change protocol names (catalog.ts) until it completes. */
  touchesNames: boolean;
  copy: 'none' | 'out-text' | 'out-binary';
  /** A COPY OUT being rewritten: how its rows are laid out, its column count, and whether the
   *  next CopyData is its HEADER line (passed unchanged). */
  copyLayout: CopyLayout | null;
  copyColumns: number;
  copyHeader: boolean;
  /** A simple Query drops the unnamed statement and portal as it starts (exec_simple_query):
   *  tentative until the server answers it, undone if it skipped it. */
  dropsUnnamed?: { table: NameTable<unknown>; version: Version<unknown> }[];
}

/** A statement about to go upstream, with nothing of its responses seen yet. */
export function running(run: StatementRun, plan: FinalPlan, lowerSql = '', touchesNames = false): Running {
  return { run, plan, rows: 0, transforms: null, formats: [], lowerSql, touchesNames, copy: 'none', copyLayout: null, copyColumns: 0, copyHeader: false };
}

/** Whether quoted values in a statement's notices and errors are replaced (RunPlan.redactMessageValues). */
function redacts(plan: FinalPlan): boolean {
  return plan.action === 'run' && plan.redactMessageValues === true;
}

/** Where a NoticeResponse, ErrorResponse or ParameterStatus arriving now is counted, and whether its values are redacted. */
export interface MessageContext { run: StatementRun | null; redact: boolean }

export type Expected =
  | { kind: 'parse' | 'bind' | 'close'; change: Change }
  | { kind: 'sync'; boundary: number }
  | { kind: 'describe'; statement: PreparedStatement | null; portal: Portal | null }
  | { kind: 'execute'; s: Running; portal: Portal | null; portalName: string; described: boolean }
  /** A simple Query or a fastpath FunctionCall: each ends with its own ReadyForQuery. */
  | { kind: 'query' | 'function'; s: Running; boundary: number };

/** Outstanding frontend messages per session (bounded memory against a client that never reads). */
const MAX_OUTSTANDING = 1_000_000;
/**
 * Bounds on completed runs held for their implicit transaction's fate (a pipeline without Sync):
 * past them the oldest is recorded as run, so a client cannot make the gateway hold results.
 */
const MAX_UNCOMMITTED = 1_000;
const MAX_UNCOMMITTED_BYTES = 16 * 1024 * 1024;

/** Command tags of statements that begin or end a transaction block. */
const TRANSACTION_CONTROL = /^(BEGIN|START TRANSACTION|COMMIT|ROLLBACK|PREPARE TRANSACTION)$/;
/** Commands that may commit inside (transaction control in a procedure or DO block). */
const MAY_COMMIT_INSIDE = /^(DO|CALL)$/;

export interface ResponseHost {
  readonly catalog: Catalog;
  endRun(run: StatementRun, error?: Failure): void;
  /** A change was settled, an entry answered, or the server's state moved: waiters re-check. */
  changed(): void;
}

export class ResponseQueue {
  readonly expected: Expected[] = [];
  /** Syncs sent by the client so far, and the unanswered Parse/Bind/Close in message order. */
  segment = 0;
  readonly pendingChanges: Change[] = [];
  /** ReadyForQuery-answered boundaries (Sync or Query) so far, and the number sent. */
  answeredBoundaries = 0;
  sentBoundaries = 0;
  /**
   * The server discards every message until the next Sync: an extended-protocol message failed
   * and the client has not sent the Sync yet. Messages sent meanwhile get no response.
   */
  skippingToSync = false;
  /** The server is in COPY-in mode (CopyInResponse seen, the client's CopyDone/CopyFail not yet sent). */
  copyIn: Running | null = null;
  /** Statements in flight that may change protocol names until they complete. */
  nameRisks = 0;
  /** Reported by the server (ParameterStatus, sent before ReadyForQuery). */
  clientEncoding: string;
  standardConformingStrings: boolean;
  /**
   * Whether statements now run in an implicit transaction (outside BEGIN ... COMMIT), where the
   * extended protocol commits only at Sync: an Execute that completed may still be rolled back by
   * a later error in its pipeline or by a failed commit. Such runs wait in `uncommitted` and are
   * recorded once the transaction's fate is known.
   */
  private implicitTransaction: boolean;
  private readonly uncommitted: StatementRun[] = [];
  private uncommittedBytes = 0;
  /**
   * A statement whose plan redacts message values has run, and its transaction is still open:
   * what the server says until the session is idle again is redacted too (a deferred constraint
   * quotes the key at COMMIT, a failed implicit commit at Sync).
   */
  private redactUntilIdle = false;

  constructor(private readonly host: ResponseHost, initial: { transactionStatus: string; clientEncoding: string; standardConformingStrings: boolean }) {
    this.implicitTransaction = initial.transactionStatus === 'I';
    this.clientEncoding = initial.clientEncoding;
    this.standardConformingStrings = initial.standardConformingStrings;
  }

  /** Queues what upstream owes; a client that pipelines without ever reading is cut off. */
  expect(e: Expected): void {
    if (this.expected.length >= MAX_OUTSTANDING) {
      throw new ProtocolError(`more than ${MAX_OUTSTANDING} messages awaiting a response: the client is not reading`);
    }
    this.expected.push(e);
    if ('s' in e && e.s.touchesNames) this.nameRisks++;
  }

  expectChange(kind: 'parse' | 'bind' | 'close', table: Change['table'], version: Change['version'], clearOnFailure: boolean, extra: Partial<Change> = {}): Change {
    const change: Change = { table, version, clearOnFailure, segment: this.segment, ...extra };
    this.expect({ kind, change });
    this.pendingChanges.push(change);
    return change;
  }

  expectSync(): void {
    this.expect({ kind: 'sync', boundary: ++this.sentBoundaries });
    this.segment++;
    this.skippingToSync = false;
  }

  expectQuery(kind: 'query' | 'function', s: Running): void {
    this.expect({ kind, s, boundary: ++this.sentBoundaries });
  }

  /** Whether a Parse/Bind/Close before the client's last Sync is still unanswered. */
  unsettledBeforeLastSync(): boolean {
    return this.pendingChanges.length > 0 && this.pendingChanges[0]!.segment < this.segment;
  }

  /** The statement whose responses are arriving now, if any. */
  current(): Running | null {
    const front = this.expected[0];
    if (!front || !('s' in front)) return null;
    if (front.kind === 'execute' && !front.described) this.applyPortalDescription(front);
    return front.s;
  }

  /** The run a notice or notification arriving now belongs to: the statement's, or a Parse's or Bind's own. */
  messageTarget(): StatementRun | null {
    const front = this.expected[0];
    if (!front) return null;
    if ('s' in front) return this.current()!.run;
    return 'change' in front ? (front.change.run ?? null) : null;
  }

  /** The server answered the message that made `change`: applied, failed, or skipped it. */
  private settle(change: Change, outcome: 'applied' | 'failed' | 'skipped', error?: Failure): void {
    const table = change.table as NameTable<unknown>;
    const version = change.version as Version<unknown>;
    if (outcome === 'applied') table.confirm(version);
    else if (outcome === 'failed' && change.clearOnFailure) table.clear(version);
    else table.undo(version);
    if (change.run) {
      if (outcome === 'applied') this.host.endRun(change.run);
      else if (outcome === 'failed') this.host.endRun(change.run, error);
      else this.host.endRun(change.run, notExecuted(error));
    }
    const at = this.pendingChanges[0] === change ? 0 : this.pendingChanges.indexOf(change);
    if (at >= 0) this.pendingChanges.splice(at, 1);
    this.host.changed();
  }

  private shift(): Expected | undefined {
    const e = this.expected.shift();
    if (e && 's' in e) {
      if (e.s.touchesNames) this.nameRisks--;
      if (redacts(e.s.plan)) this.redactUntilIdle = true;
    }
    return e;
  }

  /**
   * The run a NoticeResponse, ErrorResponse or ParameterStatus arriving now is counted under, and
   * whether its values are redacted: the statement's own plan decides, or, between statements,
   * any redacting statement still in the open transaction. A Bind's error belongs to its Execute;
   * an error at Sync (a failed commit) to the last statement it undoes.
   */
  messageContext(): MessageContext {
    const front = this.expected[0];
    if (front && 's' in front) {
      const s = this.current()!;
      return { run: s.run, redact: this.redactUntilIdle || redacts(s.plan) };
    }
    if (front && 'change' in front) {
      const execute = front.kind === 'bind' && front.change.portal !== undefined ? this.executeOf(front.change.portal) : null;
      return { run: front.change.run ?? execute?.run ?? null, redact: this.redactUntilIdle || (execute !== null && redacts(execute.plan)) };
    }
    return { run: front?.kind === 'sync' ? (this.uncommitted.at(-1) ?? null) : null, redact: this.redactUntilIdle };
  }

  /** The Execute of `portal` queued before the next Sync, if any. */
  private executeOf(portal: string): Running | null {
    for (const e of this.expected) {
      if (e.kind === 'sync') return null;
      if (e.kind === 'execute' && e.portalName === portal) return e.s;
    }
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // backend messages, in the order they arrive

  rowDescription(fields: FieldDescription[]): 'statement' | 'describe' | 'none' {
    const front = this.expected[0];
    if (front?.kind === 'describe') {
      if (front.portal) front.portal.fields = fields;
      if (front.statement) front.statement.fields = fields;
      this.shift();
      return 'describe';
    }
    return this.current() ? 'statement' : 'none';
  }

  parameterDescription(types: number[]): void {
    const front = this.expected[0];
    if (front?.kind === 'describe' && front.statement) front.statement.paramTypes = types;
  }

  /** ParseComplete, BindComplete, CloseComplete, NoData. */
  completed(): void {
    const front = this.expected[0];
    if (front && (front.kind === 'parse' || front.kind === 'bind' || front.kind === 'close' || front.kind === 'describe')) {
      this.shift();
      if ('change' in front) this.settle(front.change, 'applied');
    }
  }

  commandComplete(tag: string): void {
    const s = this.current();
    s?.run.commandComplete(tag);
    this.host.catalog.commandCompleted(tag);
    if (this.implicitTransaction && MAY_COMMIT_INSIDE.test(tag)) {
      // A COMMIT inside may have made what ran before it durable: if the transaction later fails,
      // their fate is unknown, not "rolled back".
      for (const run of this.uncommitted) run.mayHaveCommitted = true;
      if (s) s.run.mayHaveCommitted = true;
    }
    if (TRANSACTION_CONTROL.test(tag)) {
      // What ran before is now part of an explicit transaction, or committed, or rolled back
      // by a statement the log shows: from here until the next Sync, record at once.
      this.implicitTransaction = false;
      this.recordUncommitted();
    }
    const front = this.expected[0];
    if (front?.kind === 'execute') this.endFront();
    else if (front?.kind === 'query') this.host.changed();
  }

  /** EmptyQueryResponse, PortalSuspended. */
  /** EmptyQueryResponse, or PortalSuspended (`suspended`): the portal's next Execute goes on
   *  where this one stopped, and so does the row cap's count, also when it is already queued. */
  executeEnded(suspended = false): void {
    const front = this.expected[0];
    if (front?.kind !== 'execute') return;
    const portal = front.portal;
    if (suspended && portal) {
      portal.rowsReturned = front.s.rows;
      const next = this.expected.find((e, i) => i > 0 && e.kind === 'execute' && e.portal === portal);
      if (next?.kind === 'execute') next.s.rows = front.s.rows;
    }
    this.endFront();
  }

  /** ErrorResponse: returns the refusal to show instead, if the message was a refused one's poison. */
  error(error: Failure): Failure | null {
    const front = this.expected[0];
    const refusal = !front || front.kind === 'sync' || front.kind === 'describe' ? null
      : 's' in front ? front.s.run.refusal : (front.change.run?.refusal ?? front.change.refusal ?? null);
    // Any error aborts the implicit transaction: what completed in it is undone.
    for (const run of this.uncommitted) run.rolledBack(refusal ?? error);
    this.recordUncommitted();
    if (this.copyIn && front && 's' in front && front.s === this.copyIn) this.copyIn = null;
    if (!front || front.kind === 'sync') return null;
    if (front.kind === 'query' || front.kind === 'function') {
      front.s.run.fail(error);
      this.host.changed();
      return front.s.run.refusal;
    }
    // Extended protocol: the server now discards everything up to the next Sync.
    this.shift();
    if ('s' in front) this.host.endRun(front.s.run, error);
    if ('change' in front) this.settle(front.change, 'failed', error);
    const failedBind = front.kind === 'bind' ? front.change.portal : undefined;
    let own = failedBind !== undefined;
    while (this.expected.length > 0 && this.expected[0]!.kind !== 'sync') {
      const skipped = this.shift()!;
      if ('change' in skipped) this.settle(skipped.change, 'skipped', error);
      if ('s' in skipped) {
        for (const d of skipped.s.dropsUnnamed ?? []) d.table.undo(d.version);
        // A Bind's error (a parameter that does not convert, say) belongs to the Execute it was for.
        const mine = own && skipped.kind === 'execute' && skipped.portalName === failedBind;
        this.host.endRun(skipped.s.run, mine ? error : notExecuted(error));
      }
      if (skipped.kind !== 'describe') own = false;
    }
    if (this.expected.length === 0) this.skippingToSync = true; // the client has not sent the Sync yet
    this.host.changed();
    return refusal;
  }

  readyForQuery(status: string): void {
    this.recordUncommitted(); // committed, or (after an error) already marked rolled back
    this.implicitTransaction = status === 'I';
    const front = this.expected[0];
    if (front?.kind === 'query' || front?.kind === 'function') {
      this.answeredBoundaries = front.boundary;
      this.endFront();
    } else if (front?.kind === 'sync') {
      this.answeredBoundaries = front.boundary;
      this.shift();
    }
    if (status === 'I') this.redactUntilIdle = false;
    this.host.changed();
  }

  copyInResponse(): void {
    this.copyIn = this.current();
    this.host.changed();
  }

  /** The client's CopyDone or CopyFail went upstream: the server leaves COPY-in mode. */
  copyInEnded(): void {
    this.copyIn = null;
  }

  parameterStatus(name: string, value: string): void {
    if (name === 'client_encoding') this.clientEncoding = value;
    else if (name === 'standard_conforming_strings') this.standardConformingStrings = value === 'on';
  }

  private applyPortalDescription(e: Extract<Expected, { kind: 'execute' }>): void {
    e.described = true;
    const p = e.portal;
    if (!p) return;
    // SQL may have replaced an unknown name since it was described: its description is not trusted.
    const statement = this.host.catalog.statementOf(p);
    const fields = p.unknown ? null : (p.fields ?? (statement?.unknown ? null : statement?.fields) ?? null);
    e.s.run.describe(fields, p.fields ? undefined : p.resultFormats);
    e.s.formats = fields && p.fields ? fields.map((f) => f.format) : p.resultFormats;
    describedColumns(e.s, fields, p.fields ? undefined : p.resultFormats);
  }

  private endFront(): void {
    const e = this.shift();
    this.host.changed();
    if (!e || !('s' in e)) return;
    if (e.s.plan.action === 'run') e.s.plan.ended?.({ rows: e.s.rows, failed: e.s.run.failed });
    for (const d of e.s.dropsUnnamed ?? []) d.table.confirm(d.version);
    if (e.kind === 'execute' && this.implicitTransaction) {
      e.s.run.complete();
      this.uncommitted.push(e.s.run);
      this.uncommittedBytes += e.s.run.keptSize;
      while (this.uncommitted.length > MAX_UNCOMMITTED || (this.uncommitted.length > 1 && this.uncommittedBytes > MAX_UNCOMMITTED_BYTES)) {
        const oldest = this.uncommitted.shift()!;
        this.uncommittedBytes -= oldest.keptSize;
        this.host.endRun(oldest);
      }
    } else this.host.endRun(e.s.run);
  }

  private recordUncommitted(): void {
    if (this.uncommitted.length === 0) return; // every ReadyForQuery comes here
    this.uncommittedBytes = 0;
    for (const run of this.uncommitted.splice(0)) this.host.endRun(run);
  }

  // -------------------------------------------------------------------------------------------
  // the end of the session

  /**
   * The session is over: every run still waiting is recorded with what can be known. `cause`
   * says why the server's answer never came.
   */
  finish(cause: Failure): void {
    // Without a Sync, an implicit transaction never commits: the server rolls it back. (With a
    // Sync sent but unanswered, the commit may have happened: the statement's fate is unknown.)
    const syncPending = this.expected.some((e) => e.kind === 'sync');
    for (const run of this.uncommitted) {
      if (syncPending) run.unknown({ code: cause.code, message: `${cause.message}, after it completed but before its transaction's commit was confirmed` });
      else run.rolledBack({ code: cause.code, message: 'the session ended before a Sync committed it' });
    }
    this.recordUncommitted();
    for (const e of this.expected.splice(0)) {
      const run = 's' in e ? e.s.run : 'change' in e ? e.change.run : undefined;
      if (!run || run.isEnded) continue;
      run.unknown({ code: cause.code, message: `${cause.message}: whether the server ran it is not known` });
      this.host.endRun(run);
    }
    this.nameRisks = 0;
  }
}

/** Transforms for a result set's columns, from the statement's plan. */
export function describedColumns(s: Running, fields: FieldDescription[] | null, resultFormats?: number[]): void {
  s.transforms = null;
  const columns = s.plan.action === 'run' ? s.plan.columns : undefined;
  if (!columns) return;
  if (fields) {
    const formats = resultFormats ?? fields.map((f) => f.format);
    s.formats = formats;
    s.transforms = columns(fields.map((f, i) => ({ ...f, format: formats.length === 1 ? formats[0]! : (formats[i] ?? f.format) })), s.run.columnContext);
  }
}

export function notExecuted(error: Failure | undefined): Failure {
  return { code: error?.code ?? '08006', message: `not executed: an earlier message in the same pipeline failed: ${error?.message ?? ''}` };
}

export function isCancel(error: Failure): boolean {
  return error.code === SQLSTATE_QUERY_CANCELED;
}
