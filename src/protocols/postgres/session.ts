/**
 * One proxied session after startup: wires the forwarder (client -> upstream, the barrier), the
 * relay (upstream -> client) and the response queue between them, and ends the session so that
 * the record says what really happened: a statement still running when the session ends (the
 * client left, the gateway stops, a limit or an admin ends it) is cancelled upstream and its real
 * end waited for, within a bound; what never came is recorded `unknown`, never a guess.
 */
import type { Duplex } from 'node:stream';
import { ProtocolError, errorMessage } from '../../errors.js';
import type { SessionContext, SessionEndInfo } from '../engine.js';
import { Catalog } from './catalog.js';
import { clientDecoder } from './encodings.js';
import { type Frame, type FrameReader } from './framing.js';
import { Forwarder } from './forwarder.js';
import { endStream, pump, safely, write } from './io.js';
import { MessageType, decodeParameterStatus, errorResponse, frame } from './messages.js';
import { decodeNotice, notificationRecord } from './notices.js';
import { Relay } from './relay.js';
import { ResponseQueue, type Failure } from './responses.js';
import type { StatementRun } from './results.js';
import { sqlstateOf } from './sqlstate.js';
import type { UpstreamConnection } from './upstream.js';

const EMPTY = Buffer.alloc(0);
const TERMINATE = frame(MessageType.Terminate);
const FLUSH = frame(MessageType.Flush);
/** How long an ending session waits for the server to report the end of what it still runs. */
const END_GRACE_MS = 3_000;
/** admin_shutdown: "terminating connection due to administrator command" is the closest class. */
const SQLSTATE_ADMIN_SHUTDOWN = '57P01';

export interface SessionOptions {
  client: Duplex;
  upstream: UpstreamConnection;
  ctx: SessionContext;
  reader: FrameReader;
  clientChunks: AsyncIterator<Buffer>;
  /** Sends a CancelRequest for this session's upstream backend; resolves once the server has
   *  taken it (closed the connection) or it failed. */
  cancelUpstream(): Promise<void>;
}

export class Session {
  readonly ctx: SessionContext;
  readonly catalog = new Catalog();
  readonly queue: ResponseQueue;
  readonly relay: Relay;
  private readonly forwarder: Forwarder;
  private readonly client: Duplex;
  private readonly connection: UpstreamConnection;
  private readonly reader: FrameReader;
  private readonly clientChunks: AsyncIterator<Buffer>;
  private listener: (() => void) | null = null;
  private idleWaiter: (() => void) | null = null;
  private isClosing = false;
  private ending = false;
  private sawTerminate = false;
  private endReason: SessionEndInfo | null = null;
  /** Last FATAL/PANIC text from upstream, reported as the session's end error. */
  private lastUpstreamFatal: string | null = null;

  constructor(private readonly o: SessionOptions) {
    this.ctx = o.ctx;
    this.client = o.client;
    this.connection = o.upstream;
    this.reader = o.reader;
    this.clientChunks = o.clientChunks;
    const reported = new Map(o.upstream.parameters);
    this.queue = new ResponseQueue(this, {
      transactionStatus: o.upstream.transactionStatus,
      clientEncoding: reported.get('client_encoding') ?? 'UTF8',
      standardConformingStrings: (reported.get('standard_conforming_strings') ?? 'on') === 'on',
    });
    this.relay = new Relay(this.client, this.queue, {
      parameterStatus: (name, value) => this.parameterStatus(name, value),
      upstreamFatal: (message) => (this.lastUpstreamFatal = message),
      cancelUpstream: () => this.cancelUpstream(),
      unattributed: (buf, f, masked) => this.unattributed(buf, f, masked),
      ...(o.ctx.scrubText ? { scrubText: o.ctx.scrubText } : {}),
    });
    this.forwarder = new Forwarder(this);
    this.connection.socket.on('error', () => {}); // surfaces as 'close'
  }

  get upstream(): Duplex {
    return this.connection.socket;
  }

  get closing(): boolean {
    return this.isClosing;
  }

  async run(): Promise<void> {
    const signal = this.ctx.signal;
    const onAbort = () => void this.end({ reason: 'terminated', error: reasonOf(signal) }, { cancel: true, fatal: reasonOf(signal) });
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.all([this.clientLoop(), this.upstreamLoop()]);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    this.queue.finish({ code: '08006', message: this.endReason?.reason === 'upstream-closed' ? 'the database connection ended' : 'the session ended' });
    safely(() => this.ctx.hooks.sessionEnd(this.endReason ?? { reason: 'closed', error: null }));
  }

  /** A CancelRequest from this session's owner: ends a held statement, or stops one not yet
   *  sent (Forwarder.cancelUnsent), else goes upstream. */
  cancelRequest(): void {
    if (!this.forwarder.cancelHeld() && !this.forwarder.cancelUnsent()) this.cancelUpstream();
  }

  /**
   * A cancel sent upstream and not yet taken by the server. The next statement waits for it:
   * PostgreSQL signals whatever the backend runs when the request arrives, so a cancel of a
   * statement that finished meanwhile (a result cut at its row cap) would otherwise stop the
   * statement after it. Once the server has taken the request, the signal has been sent; an
   * idle backend drops it.
   */
  get pendingCancel(): Promise<void> | null {
    return this.cancelInFlight;
  }

  private cancelInFlight: Promise<void> | null = null;

  private cancelUpstream(): void {
    // One at a time: a second one would signal the same statement (what follows waits for the
    // first), and a client repeating CancelRequests must not make the gateway dial the database
    // (where each cancel costs a connection) as often as it likes. With no statement upstream
    // there is nothing to cancel: an idle backend drops the signal.
    if (this.cancelInFlight || !this.queue.expected.some((e) => 's' in e)) return;
    const sent = this.o.cancelUpstream();
    this.cancelInFlight = sent;
    void sent.then(() => {
      if (this.cancelInFlight === sent) this.cancelInFlight = null;
    });
  }

  // -------------------------------------------------------------------------------------------
  // hosts' callbacks

  endRun(run: StatementRun, error?: Failure): void {
    if (run.isEnded) return;
    if (error) run.fail(error);
    const end = run.finish();
    safely(() => this.ctx.hooks.queryEnd(end));
  }

  changed(): void {
    this.listener?.();
    this.idleWaiter?.();
  }

  onChange(listener: (() => void) | null): void {
    this.listener = listener;
  }

  terminated(): void {
    this.sawTerminate = true;
  }

  private parameterStatus(name: string, value: string): boolean {
    // SET client_encoding (or set_config) to an encoding the record cannot follow ends the session.
    if (name === 'client_encoding' && !clientDecoder(value)) {
      this.protocolError(`client_encoding ${value.slice(0, 40)} is not supported through hoop (statements could not be recorded faithfully); use UTF8`);
      return false;
    }
    return true;
  }

  /** A message of no statement, as the client received it, for a record of its own (with what was masked in it). */
  private unattributed(buf: Buffer, f: Frame, masked: Record<string, number> | null): void {
    const hook = this.ctx.hooks.unattributed;
    if (!hook) return;
    safely(() => {
      const body = buf.subarray(f.bodyStart, f.end);
      const record: Record<string, unknown> =
        f.type === MessageType.NoticeResponse ? { kind: 'notice', ...decodeNotice(body) }
        : f.type === MessageType.ErrorResponse ? { kind: 'error', ...decodeNotice(body) }
        : f.type === MessageType.ParameterStatus ? { kind: 'parameter_status', ...decodeParameterStatus(body) }
        : { kind: 'notification', ...notificationRecord(buf, f.start, f.bodyStart, f.end) };
      if (masked) record.masked = masked;
      hook(record);
    });
  }

  // -------------------------------------------------------------------------------------------
  // the loops

  private async clientLoop(): Promise<void> {
    try {
      await this.clientChunks.return?.(); // from here on the client flows through pump()
      const first = this.forwarder.push(this.reader.push(EMPTY)); // frames that arrived behind the StartupMessage
      if (first) await first;
      await pump(this.client, (chunk) => (this.isClosing ? undefined : this.forwarder.push(this.reader.push(chunk))));
      await this.end(this.sawTerminate ? { reason: 'client-terminated', error: null } : { reason: 'client-closed', error: null }, { cancel: !this.sawTerminate });
    } catch (err) {
      if (err instanceof ProtocolError) this.protocolError(err.message);
      else await this.end({ reason: 'client-error', error: errorMessage(err) }, { cancel: true });
    }
  }

  private async upstreamLoop(): Promise<void> {
    try {
      if (this.connection.leftover.length > 0) await this.relay.relayChunk(this.connection.leftover);
      await pump(this.connection.socket, (chunk) => this.relay.relayChunk(chunk));
      this.upstreamEnded({ reason: 'upstream-closed', error: this.lastUpstreamFatal });
    } catch (err) {
      this.upstreamEnded({ reason: 'upstream-error', error: errorMessage(err) });
    }
  }

  // -------------------------------------------------------------------------------------------
  // ends

  /**
   * Ends the session: nothing more goes upstream; what still runs is cancelled (with `cancel`)
   * and its end waited for, briefly; then the client gets the FATAL (if any) at a message
   * boundary, and upstream a Terminate.
   */
  private async end(reason: SessionEndInfo, o: { cancel: boolean; fatal?: string }): Promise<void> {
    if (this.ending) return;
    this.endReason ??= reason;
    this.stopForwarding();
    const socket = this.connection.socket;
    // The client is told first, between two messages; what upstream still sends is only accounted.
    this.relay.whenAtBoundary(() => {
      this.relay.silence();
      endStream(this.client, o.fatal ? errorResponse({ severity: 'FATAL', code: SQLSTATE_ADMIN_SHUTDOWN, message: o.fatal }) : undefined);
    });
    if (this.queue.expected.length > 0 && !socket.destroyed) {
      write(socket, FLUSH); // the server sends what it owes without waiting for a Sync
      if (o.cancel && this.queue.expected.some((e) => 's' in e)) this.cancelUpstream();
      await this.idle(END_GRACE_MS);
    }
    if (!socket.destroyed && !socket.writableEnded) endStream(socket, this.sawTerminate ? undefined : TERMINATE);
  }

  /** Resolves once upstream owes nothing more, the upstream is gone, or after `ms`. */
  private idle(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      const socket = this.connection.socket;
      function done(): void {
        clearTimeout(timer);
        socket.off('close', done);
        resolve();
      }
      socket.once('close', done);
      this.idleWaiter = () => {
        if (this.queue.expected.length === 0) {
          this.idleWaiter = null;
          done();
        }
      };
      this.idleWaiter();
    });
  }

  private upstreamEnded(reason: SessionEndInfo): void {
    // After a Terminate, whichever side notices the end first, the client ended the session.
    this.endReason ??= this.sawTerminate ? { reason: 'client-terminated', error: null } : reason;
    this.stopForwarding();
    endStream(this.client);
  }

  /** Nothing more goes upstream; whatever waits (a hold, a wait for answers) re-checks and gives up. */
  private stopForwarding(): void {
    this.isClosing = true;
    this.ending = true;
    this.changed();
  }

  protocolError(message: string): void {
    safely(() => this.ctx.hooks.protocolError({ message }));
    this.endReason ??= { reason: 'protocol-error', error: message };
    this.stopForwarding();
    this.connection.socket.destroy();
    // Mid-way through a relayed row the FATAL cannot go in; the client then only sees the close.
    if (this.relay.atMessageBoundary) endStream(this.client, errorResponse({ severity: 'FATAL', code: sqlstateOf('HOOP_PROTOCOL'), message: `hoop: ${message}` }));
    else this.client.destroy();
  }
}

function reasonOf(signal: AbortSignal | undefined): string {
  const r: unknown = signal?.reason;
  return typeof r === 'string' ? r : r instanceof Error && !(r.name === 'AbortError') ? r.message : 'hoop: the session was ended by the gateway';
}
