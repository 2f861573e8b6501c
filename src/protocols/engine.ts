/**
 * The contract between the gateway and a wire-protocol engine, protocol-neutral: the gateway
 * hands an engine one client byte stream and a SessionContext; the engine speaks the protocol,
 * asks the context before every statement (`plan`, then the write-ahead `queryStart`), reaches
 * the database only through `dial`, and reports through the hooks. An engine imports nothing of
 * the gateway, the store or the CLI.
 *
 *   gateway ── serve(client, ctx) ──▶ engine ── ctx.dial() ──▶ database (TCP today, an agent later)
 *              ctx.hooks.plan / queryStart / queryEnd / sessionStart / sessionEnd
 *              ctx.signal: the gateway ends a session (limit, shutdown, admin kill)
 */
import type { Duplex } from 'node:stream';
import type { SslMode } from './postgres/sslmode.js';
import type { ValueSink } from './value-sink.js';

export type { SslMode } from './postgres/sslmode.js';
export { KEEP, SQL_NULL, ValueSink, applyTransform, valueTransform } from './value-sink.js';

export interface Engine {
  /** Serves one client stream until it ends; never rejects. */
  serve(client: Duplex, ctx: SessionContext): Promise<void>;
  readonly activeSessions: number;
  /**
   * Told of a cancel request whose key no session of this engine holds (with `workers: N`,
   * the client's cancel connection may reach another worker than its session: cluster.ts).
   */
  onUnknownCancel?: (cancel: CancelKeyRequest) => void;
  /** A cancel request another process received: applied as if it had arrived here. */
  cancelByKey?(cancel: CancelKeyRequest): void;
}

/** A cancel request as the stream that carried it saw it: the key, and whose stream it was. */
export interface CancelKeyRequest {
  processId: number;
  secretKey: number;
  /** The identity subject of the stream (SessionContext.owner). */
  owner: string;
  /** Whether the stream came by the native listener (SessionContext.keyCancel). */
  keyCancel: boolean;
}

export interface EngineOptions {
  /** Largest client frame accepted (bytes). */
  maxFrameBytes?: number;
}

type EngineFactory = (options: EngineOptions) => Engine;
const factories = new Map<string, EngineFactory>();

/** A connection `type` (as written in hoop.yaml) and how to make its engine. */
export function registerEngine(type: string, factory: EngineFactory): void {
  factories.set(type, factory);
}

/** The connection types an engine exists for (config validation asks this). */
export function engineTypes(): string[] {
  return [...factories.keys()];
}

export function createEngine(type: string, options: EngineOptions = {}): Engine {
  const factory = factories.get(type);
  if (!factory) throw new Error(`no engine for connection type ${JSON.stringify(type)}`);
  return factory(options);
}

/** Where the database is and how the gateway logs in to it. */
export interface UpstreamConfig {
  host: string; port: number; database: string; user: string;
  password?: string; sslmode: SslMode; ca?: string /* PEM text */;
  connectTimeoutMs?: number;
  /** The database role the session runs as, given at startup (`options: -c role=…`): the
   *  session's reset value, so RESET ROLE / RESET ALL / DISCARD ALL keep it. The login `user` must
   *  be a member of it; absent: the session is `user`'s own. */
  role?: string;
}

export interface StartupInfo {          // what the client asked for when it started the session
  user: string | null; database: string | null; application: string | null;
  parameters: Record<string, string>;
}

/** One statement as the engine is about to send it: becomes query.start. */
export interface StatementStart {
  queryId: string;
  protocol: 'simple' | 'extended' | 'fastpath';
  /** The text the server will run, decoded in the session's client encoding, up to the text
   *  limit (statementBytes and statementSha256 cover all of it). */
  statement: string;
  statementName: string | null; portal: string | null; parameters: unknown[];
  /** A simple Query of several statements: each one's text, in order. */
  statements?: string[];
  /** Byte length and SHA-256 (hex) of the whole statement text as sent. */
  statementBytes?: number;
  statementSha256?: string;
  /** The statement text was cut at the text limit. */
  statementTruncated?: boolean;
  /** A simple Query cut at the text limit: whether its WHOLE text matches a pattern (over its
   *  bytes read as latin1, so only ASCII patterns are meaningful). Only valid while plan() runs. */
  matchesWhole?: (pattern: RegExp) => boolean;
  /** What this message does when it is not an execution: a Parse or Bind recorded on its own. */
  phase?: 'parse' | 'bind';
  /** The engine cannot name what the server will run (e.g. a prepared statement that SQL may
   *  have replaced): `statement` says why, and policy must treat it as unknown. */
  unknown?: boolean;
}

export type Outcome = 'ok' | 'error' | 'cancelled' | 'refused' | 'rolled_back' | 'unknown';

/** One statement's end: becomes query.end. */
export interface StatementEnd {
  /** rolled_back: the statement completed, then its implicit transaction failed (error says why).
   *  unknown: the gateway cannot know whether it ran or committed (error says why). */
  queryId: string; outcome: Outcome;
  error: { code: string; message: string } | null;
  commandTags: string[]; rows: number; bytes: number; durationMs: number;
  result: StatementResult;
  /** Values the plan's transforms and the session's scrubber changed, by label (see ColumnContext.tally). */
  masked?: Record<string, number>;
}

export interface StatementResult { sets: ResultSet[]; truncated: boolean; sha256: string }

/** One result set as the client received it: one per RowDescription or COPY OUT; `tag` is the
 *  CommandComplete that ended it (null if an error, a cancel or PortalSuspended did), and
 *  `statement` the index of the statement that returned it (commands completed before it). */
export interface ResultSet { columns: string[]; rows: (string | null)[][]; tag: string | null; statement: number }

/** A result column as the server describes it (PostgreSQL's RowDescription field). */
export interface ResultColumn { name: string; tableOid: number; column: number; typeOid: number; format: number }

/**
 * Rewrites one value of a result column: `row[start, end)`, in its wire format (0 text, 1 binary).
 * Returns KEEP (value-sink.ts: the value passes as it is), SQL_NULL, or the length n of the
 * replacement it wrote at `sink.bytes[sink.at, sink.at + n)` after `sink.reserve(n)` (leaving
 * `sink.at` where it was). It must not write into `row`, and keeps neither `row` nor the sink's
 * bytes, except in work queued in the sink's batch (value-sink.ts), which may read `row` until
 * the sink is settled: callers settle before they let `row` go.
 * `valueTransform` (value-sink.ts) makes one from a function of whole values.
 */
export type ColumnTransform = (row: Buffer, start: number, end: number, format: number, sink: ValueSink) => number;

/** What the engine tells a plan about the result set it asks transforms for. */
export interface ColumnContext {
  /** Which statement of the message returns it (a simple Query of several: commands completed before it). */
  statement: number;
  /** Counts changed values under a label, e.g. the column and rule; query.end carries the totals. */
  tally(label: string, n?: number): void;
  /** The same count as an object to increment per value (no lookup per value); its `n` joins
   *  the label's total when the statement ends. */
  counter?(label: string): { n: number };
}

/** COPY ... TO STDOUT options as the plan read them from the statement (the COPY reference's defaults otherwise). */
export interface CopyOptions {
  format: 'text' | 'csv' | 'binary';
  delimiter: string; null: string; quote: string; escape: string; header: boolean;
  /** The ENCODING option, when given: the rows are in it instead of client_encoding. */
  encoding?: string;
}

export interface RunPlan {
  action: 'run';
  /** Per-column transforms for a result set with these columns (null: pass the column); the
   *  engine applies them to every row of every result set the statement returns. Columns the
   *  engine cannot describe (rows of a portal described nowhere, COPY data) have tableOid,
   *  column and typeOid 0. */
  columns?: (columns: ResultColumn[], context: ColumnContext) => (ColumnTransform | null)[];
  /** Per statement of the message: its COPY TO STDOUT options, so CSV and non-default text
   *  formats can be rewritten row by row (without them only the default text format and binary
   *  can). A HEADER line passes unchanged; output that does not read as the options say, or a
   *  format other than the CopyOutResponse's, stops the result with an error. */
  copyOptions?: (CopyOptions | null)[];
  /** The statement reads protected data: quoted values in its ErrorResponse and NoticeResponse
   *  texts (`invalid input syntax for type integer: "123-45-6789"`) are replaced before they leave
   *  (tallied as `message values`), also in what the server says until its transaction ends. */
  redactMessageValues?: boolean;
  /** More rows than this end the result with an error, and the statement is cancelled upstream. */
  rowCap?: number;
  /** Called once when the result is cut at rowCap: the hint of the client's error (e.g. the
   *  approval request made for the full result). Returns at once; a throw gets the default hint. */
  rowCapHint?: () => string;
  /** Rows of the same result the client already received (a cursor's earlier FETCHes): they
   *  count against rowCap. Asked when each execution starts. */
  rowsBefore?: () => number;
  /** Told when each execution ends: the rows counted against rowCap (rowsBefore's included)
   *  and whether it ended in an error. */
  ended?: (end: { rows: number; failed: boolean }) => void;
  /** What the record keeps of this decision (for query.start). */
  summary?: Record<string, unknown>;
  /** For this execution only (an approval used once): never reused for a prepared statement's later Executes. */
  once?: boolean;
  /** Asked before the plan is reused for a prepared statement's later Execute: false (the config
   *  it was made under was reloaded) plans that Execute afresh. */
  stillValid?: () => boolean;
}
export interface RefusePlan { action: 'refuse'; code: string /* SQLSTATE */; message: string; hint?: string; summary?: Record<string, unknown> }
export interface HoldPlan {
  action: 'hold';
  /** Sent to the client as a NOTICE while the statement waits. */
  notice: string;
  /** Settles with the final decision; a client cancel ends the hold with `cancelled()`. */
  decision: Promise<RunPlan | RefusePlan>;
  /** The client cancelled the held statement: the gateway withdraws the request. */
  cancelled?: () => void;
  summary?: Record<string, unknown>;
}
export type StatementPlan = RunPlan | RefusePlan | HoldPlan;
export type FinalPlan = RunPlan | RefusePlan;

export const RUN: RunPlan = Object.freeze({ action: 'run' }) as RunPlan;

export interface SessionEndInfo {
  reason: string;
  /** What the client was told (safe for the session's own user). */
  error: string | null;
  /** Operator detail (addresses, accounts, the server's words): for admins and auditors only. */
  detail?: string;
}

export interface SessionHooks {
  /** Durable before the engine dials upstream; reject to refuse the session (FATAL to client). */
  sessionStart(info: StartupInfo): Promise<void>;
  /** The decision for a statement, before anything of it goes upstream. A prepared statement's
   *  `run` plan is computed once per Parse and reused by its Executes until the catalog changes.
   *  A Bind recorded on its own (`phase: 'bind'`) is planned upstream when it runs (planning can
   *  call functions): decide it as its Execute would be decided, or a refusal comes too late. */
  plan(statement: StatementStart): StatementPlan | Promise<StatementPlan>;
  /** WRITE-AHEAD: resolve only once query.start, with the final decision, is durable. If it
   *  rejects, the statement is NOT sent upstream; the client gets an error, the session goes on. */
  queryStart(statement: StatementStart, decision: FinalPlan): Promise<void>;
  queryEnd(end: StatementEnd): void;                 // fire-and-forget
  sessionEnd(info: SessionEndInfo): void;
  protocolError(info: { message: string }): void;    // malformed/oversized client frame
  /** A message the client received outside any statement (a notification in an idle session). */
  unattributed?(message: Record<string, unknown>): void;
}

export interface SessionContext {
  upstream: UpstreamConfig;
  /** Opens the upstream byte stream (the session's and each cancel request's). */
  dial(): Promise<Duplex>;
  hooks: SessionHooks;
  /** Aborting ends the session at a message boundary with a FATAL whose message is the reason. */
  signal?: AbortSignal;
  payloadLimit: number;        // bytes of result (and of statement text) kept per statement
  owner: string;               // identity subject; a CancelRequest may only cancel its owner's sessions
  /**
   * A client that reached the gateway with no tunnel (its own PostgreSQL listener): a
   * CancelRequest carries no identity, only the key this session gave its client over the
   * session's own authenticated connection, as in PostgreSQL. A CancelRequest on a `keyCancel`
   * stream reaches a `keyCancel` session by that key alone; a tunnel's sessions stay reachable
   * only through their owner's tunnels, and a tunnel's cancel reaches no `keyCancel` session of
   * another owner.
   */
  keyCancel?: boolean;
  /** Bytes the gateway already read from the client stream (a listener that authenticated the
   *  client itself read its startup packet): the engine reads them before the stream's own. */
  preread?: Buffer;
  /** The content net over text the client receives outside result columns (NoticeResponse,
   *  ErrorResponse and NotificationResponse texts, ParameterStatus values): returns the text to
   *  send (the same string when nothing matched) and tallies what it replaced. The tally goes to
   *  the statement the message belongs to, or to the message's own `unattributed` record
   *  (`masked`); the record keeps the scrubbed text. */
  scrubText?: (text: string, tally: (label: string) => void) => string;
}
