/**
 * The gateway's own simple-Query client on an upstream connection of its own (never a client's
 * session): what the gateway reads for itself, such as the catalog behind masking.
 *
 *   gateway                      upstream
 *   StartupMessage … auth  ───►  (upstream.ts: TLS per sslmode, SCRAM, until ReadyForQuery)
 *   Query "s1; s2"         ───►
 *                          ◄───  RowDescription, DataRow*, CommandComplete   (s1)
 *                          ◄───  RowDescription, DataRow*, CommandComplete   (s2)
 *                          ◄───  ReadyForQuery
 *
 * One Query at a time (callers are queued); results in text format, one per statement; an
 * ErrorResponse rejects with its SQLSTATE. Whatever the server sends is bounded: a result past
 * `maxResultBytes` or anything outside the simple-Query flow (COPY, a protocol error) ends the
 * connection, so it is never left mid-message.
 */
import type { Duplex } from 'node:stream';
import { HoopError, ProtocolError, errorMessage } from '../../errors.js';
import type { UpstreamConfig } from '../engine.js';
import { FrameReader, describeType, type FrameBatch } from './framing.js';
import {
  MessageType,
  cstring,
  decodeDataRow,
  decodeNoticeFields,
  decodeRowDescription,
  frame,
} from './messages.js';
import { connectUpstream, upstreamError, type Dial } from './upstream.js';

export const ADMIN_APPLICATION_NAME = 'hoop-gateway-catalog';
const DEFAULT_MAX_RESULT_BYTES = 256 * 1024 * 1024;
const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;
const DEFAULT_LOCK_TIMEOUT_MS = 5_000;
/** How much longer than statement_timeout the gateway waits before it gives up on a silent server. */
const CLIENT_DEADLINE_GRACE_MS = 10_000;

export interface QueryResult {
  columns: string[];
  /** Text-format values; null for SQL NULL. */
  rows: (string | null)[][];
}

export interface AdminConnection {
  /** Runs one simple Query (several statements allowed): one result per statement, in order. */
  query(sql: string): Promise<QueryResult[]>;
  /** Terminate, then the end of the stream. */
  close(): Promise<void>;
  /** The connection failed or was closed: every query rejects; open a new one. */
  readonly isBroken: boolean;
}

export interface AdminConnectionOptions {
  /** Bound on the bytes of one Query's answer (default 256 MiB). */
  maxResultBytes?: number;
  /** The session's statement_timeout (default 30 s). */
  statementTimeoutMs?: number;
  /** The session's lock_timeout (default 5 s): a catalog read waiting on another session's DDL lock fails instead. */
  lockTimeoutMs?: number;
}

/** The server answered a Query with an ErrorResponse. */
export class AdminQueryError extends HoopError {
  readonly sqlstate: string;
  readonly serverMessage: string;
  constructor(fields: Record<string, string>) {
    const sqlstate = fields.C ?? 'XX000';
    const serverMessage = fields.M ?? 'error';
    super('HOOP_UPSTREAM', `${serverMessage} (SQLSTATE ${sqlstate})`);
    this.sqlstate = sqlstate;
    this.serverMessage = serverMessage;
  }
}

/** Opens the gateway's own session upstream, with its application_name and timeouts set at startup. */
export async function openAdminConnection(cfg: UpstreamConfig, dial: Dial, options: AdminConnectionOptions = {}): Promise<AdminConnection> {
  const statementTimeoutMs = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  const conn = await connectUpstream(cfg, {
    dial,
    // Startup parameters are session defaults: no round trip. search_path pg_catalog alone, so
    // no object a user creates can stand in for a catalog function or operator.
    parameters: {
      application_name: ADMIN_APPLICATION_NAME,
      statement_timeout: String(statementTimeoutMs),
      lock_timeout: String(options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS),
      search_path: 'pg_catalog',
    },
  });
  return new SimpleQueryClient(cfg, conn.socket, conn.leftover, options.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES, statementTimeoutMs + CLIENT_DEADLINE_GRACE_MS);
}

interface PendingQuery {
  results: QueryResult[];
  current: QueryResult | null;
  error: AdminQueryError | null;
  bytes: number;
  resolve(results: QueryResult[]): void;
  reject(err: unknown): void;
}

class SimpleQueryClient implements AdminConnection {
  private readonly reader: FrameReader;
  private pending: PendingQuery | null = null;
  /** Set once the connection is unusable; every later query rejects with it. */
  private broken: HoopError | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly cfg: UpstreamConfig,
    private readonly socket: Duplex,
    leftover: Buffer,
    private readonly maxResultBytes: number,
    private readonly deadlineMs: number,
  ) {
    this.reader = new FrameReader({ maxFrameBytes: maxResultBytes, peer: 'upstream' });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => this.fail(this.upstreamError(`connection failed: ${errorMessage(err)}`, err)));
    socket.on('close', () => this.fail(this.upstreamError('the server closed the connection')));
    if (leftover.length > 0) this.onData(leftover);
    socket.resume();
  }

  get isBroken(): boolean {
    return this.broken !== null;
  }

  query(sql: string): Promise<QueryResult[]> {
    // Queued behind the previous Query whatever its outcome: one Query on the wire at a time.
    const run = this.queue.then(() => this.send(sql));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.queue;
    if (this.socket.destroyed) return;
    this.broken ??= new HoopError('HOOP_UPSTREAM', 'the admin connection is closed');
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end(frame(MessageType.Terminate));
      // A server that does not hang up after Terminate is dropped.
      setTimeout(() => this.socket.destroy(), 2_000).unref();
    });
  }

  private send(sql: string): Promise<QueryResult[]> {
    if (this.broken) return Promise.reject(this.broken);
    // cstring would cut a NUL: the server would run a different text than the caller wrote.
    if (sql.includes('\0')) return Promise.reject(new HoopError('HOOP_INTERNAL', 'a query text must not contain NUL'));
    return new Promise<QueryResult[]>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(this.upstreamError(`no answer within ${this.deadlineMs} ms`)), this.deadlineMs);
      const done = () => clearTimeout(timer);
      this.pending = {
        results: [],
        current: null,
        error: null,
        bytes: 0,
        resolve: (r) => (done(), resolve(r)),
        reject: (e) => (done(), reject(e)),
      };
      this.socket.write(frame(MessageType.Query, cstring(sql)));
    });
  }

  private onData(chunk: Buffer): void {
    if (this.broken) return;
    try {
      const batch = this.reader.push(chunk);
      this.onFrames(batch);
    } catch (err) {
      this.fail(err instanceof HoopError && !(err instanceof ProtocolError) ? err : this.upstreamError(`its answer is not PostgreSQL's (${errorMessage(err)})`, err));
    }
  }

  private onFrames(batch: FrameBatch): void {
    for (const f of batch.frames) {
      const body = batch.buffer.subarray(f.bodyStart, f.end);
      switch (f.type) {
        // Asynchronous messages may come at any time: nothing the gateway needs from them here.
        case MessageType.NoticeResponse:
        case MessageType.ParameterStatus:
        case MessageType.NotificationResponse:
          continue;
      }
      const q = this.pending;
      if (!q) throw this.upstreamError(`unexpected message ${describeType(f.type)} with no query running`);
      q.bytes += f.end - f.start;
      if (q.bytes > this.maxResultBytes) throw this.upstreamError(`the answer exceeds the limit of ${this.maxResultBytes} bytes`);
      this.onQueryFrame(q, f.type, body);
    }
  }

  private onQueryFrame(q: PendingQuery, type: number, body: Buffer): void {
    switch (type) {
      case MessageType.RowDescription: {
        const fields = decodeRowDescription(body);
        q.current = { columns: fields.map((c) => c.name), rows: [] };
        return;
      }
      case MessageType.DataRow: {
        if (!q.current) throw this.upstreamError('DataRow without a RowDescription');
        const values = decodeDataRow(body);
        if (values.length !== q.current.columns.length) throw this.upstreamError('DataRow does not match its RowDescription');
        q.current.rows.push(values.map((v) => (v === null ? null : v.toString('utf8'))));
        return;
      }
      case MessageType.CommandComplete:
        q.results.push(q.current ?? { columns: [], rows: [] });
        q.current = null;
        return;
      case MessageType.EmptyQueryResponse:
        return;
      case MessageType.ErrorResponse:
        // The server skips the rest of the string and sends ReadyForQuery next.
        q.error ??= new AdminQueryError(decodeNoticeFields(body));
        q.current = null;
        return;
      case MessageType.ReadyForQuery:
        this.pending = null;
        if (q.error) q.reject(q.error);
        else q.resolve(q.results);
        return;
      default:
        // COPY or anything else: the gateway's own queries never ask for it.
        throw this.upstreamError(`unexpected message ${describeType(type)} in a simple query`);
    }
  }

  /** The connection cannot be trusted to be in step any more: drop it, fail what waits. */
  private fail(err: HoopError): void {
    if (!this.broken) this.broken = err;
    this.socket.destroy();
    const q = this.pending;
    this.pending = null;
    q?.reject(this.broken);
  }

  private upstreamError(message: string, cause?: unknown): HoopError {
    return upstreamError(this.cfg, message, cause);
  }
}
