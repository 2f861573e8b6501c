/**
 * The PostgreSQL protocol engine: serves one client byte stream (one tunnel) per `serve` call,
 * relaying it to the gateway's own upstream connection with write-ahead audit hooks.
 * The message flow is drawn in ./README.md.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { HoopError, errorMessage, isHoopError } from '../../errors.js';
import { registerEngine, type CancelKeyRequest, type Engine, type EngineOptions, type SessionContext, type StartupInfo } from '../engine.js';
import { clientDecoder } from './encodings.js';
import {
  CANCEL_REQUEST_CODE,
  DEFAULT_MAX_FRAME_BYTES,
  FrameReader,
  GSSENC_REQUEST_CODE,
  PROTOCOL_VERSION_3,
  SSL_REQUEST_CODE,
  type FrameBatch,
} from './framing.js';
import { chunksOf, endStream, safely, sendFatal } from './io.js';
import {
  authenticationOk,
  backendKeyData,
  cstring,
  decodeCancelRequest,
  decodeStartupMessage,
  frame,
  MessageType,
  parameterStatus,
  readyForQuery,
} from './messages.js';
import { Session } from './session.js';
import { sqlstateOf } from './sqlstate.js';
import { UpstreamConnectError, connectUpstream, sendCancelRequest, type UpstreamConnection } from './upstream.js';

export type { SslMode, UpstreamConfig, StartupInfo, StatementStart, StatementEnd, ResultSet, SessionHooks, SessionContext } from '../engine.js';

/** Startup parameters passed from the client to the upstream; user and database come from the
 *  connection, and anything else (e.g. `replication`, `options`) is not the client's to choose. */
const PASSED_PARAMETERS = ['application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'extra_float_digits', 'IntervalStyle'];

const STARTUP_TIMEOUT_MS = 60_000;

/** A session a CancelRequest can reach: the gateway's key maps to the session. */
interface CancelTarget {
  owner: string;
  /** Reachable by its key alone from another `keyCancel` stream (SessionContext.keyCancel). */
  keyCancel: boolean;
  session: Session;
}

export class PostgresEngine implements Engine {
  private readonly maxFrameBytes: number;
  private readonly cancelTargets = new Map<string, CancelTarget>();
  private active = 0;

  constructor(options: EngineOptions = {}) {
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  get activeSessions(): number {
    return this.active;
  }

  async serve(client: Duplex, ctx: SessionContext): Promise<void> {
    client.on('error', () => {}); // errors surface as 'close'; never crash the process
    this.active++;
    try {
      await this.serveClient(client, ctx);
    } catch {
      // serve never rejects: every path below already answered the client where it could.
      client.destroy();
    } finally {
      this.active--;
    }
  }

  private async serveClient(client: Duplex, ctx: SessionContext): Promise<void> {
    const reader = new FrameReader({ startup: true, maxFrameBytes: this.maxFrameBytes, peer: 'client' });
    const iterator = withFirst(ctx.preread, chunksOf(client)[Symbol.asyncIterator]());
    let first: { batch: FrameBatch; code: number } | null = null;
    // Like authentication_timeout: a stream that never sends its startup packet is not kept.
    const timer = setTimeout(() => client.destroy(), STARTUP_TIMEOUT_MS);
    timer.unref();
    try {
      for (;;) {
        first = await readStartupPacket(reader, iterator);
        if (!first) return endStream(client);
        if (first.code !== SSL_REQUEST_CODE && first.code !== GSSENC_REQUEST_CODE) break;
        client.write(Buffer.from('N')); // the local listener owns TLS; decline, as PostgreSQL may
      }
    } catch (err) {
      return this.refuseProtocol(client, ctx, errorMessage(err));
    } finally {
      clearTimeout(timer);
    }
    const f = first.batch.frames[0]!;
    const body = first.batch.buffer.subarray(f.bodyStart, f.end);
    if (first.code === CANCEL_REQUEST_CODE) return this.cancel(client, ctx, body);
    if (first.code >>> 16 !== 3) {
      return this.refuseProtocol(client, ctx, `unsupported frontend protocol ${first.code >>> 16}.${first.code & 0xffff}: hoop speaks 3.0`);
    }
    let startup: ReturnType<typeof decodeStartupMessage>;
    try {
      startup = decodeStartupMessage(body);
    } catch (err) {
      return this.refuseProtocol(client, ctx, errorMessage(err));
    }
    const encoding = startup.parameters.client_encoding;
    if (encoding !== undefined && !clientDecoder(encoding)) {
      return this.refuseProtocol(client, ctx, `client_encoding ${encoding.slice(0, 40)} is not supported through hoop (statements could not be recorded faithfully); use UTF8`);
    }
    return this.startSession(client, ctx, reader, iterator, startup.parameters, first.code);
  }

  private async startSession(
    client: Duplex,
    ctx: SessionContext,
    reader: FrameReader,
    iterator: AsyncIterator<Buffer>,
    parameters: Record<string, string>,
    protocol: number,
  ): Promise<void> {
    const info: StartupInfo = {
      user: parameters.user ?? null,
      database: parameters.database ?? null,
      application: parameters.application_name ?? null,
      parameters: { ...parameters },
    };
    try {
      await ctx.hooks.sessionStart(info);
    } catch (err) {
      return sendFatal(client, isHoopError(err) ? sqlstateOf(err.code) : '28000', `hoop: session refused: ${errorMessage(err)}`);
    }
    let upstream: UpstreamConnection;
    try {
      const passed: Record<string, string> = {};
      for (const k of PASSED_PARAMETERS) if (parameters[k] !== undefined) passed[k] = parameters[k];
      upstream = await connectUpstream(ctx.upstream, { parameters: passed, dial: ctx.dial });
    } catch (err) {
      // The details (address, user, the server's words) go to the record and the gateway's log.
      const message = errorMessage(err);
      const told = err instanceof UpstreamConnectError ? err.clientMessage : message;
      sendFatal(client, sqlstateOf(isHoopError(err) ? err.code : 'HOOP_UPSTREAM'), `hoop: ${told}`);
      safely(() => ctx.hooks.sessionEnd({ reason: 'upstream-failed', error: told, detail: message }));
      return;
    }
    // The gateway's own cancel key: upstream's never reaches the client.
    const processId = randomInt(1, 0x7fffffff);
    const secretKey = randomBytes(4).readInt32BE(0);
    const key = `${processId}:${secretKey}`;
    const upstreamKey = upstream.backendKey;
    const cancelUpstream = (): Promise<void> => (upstreamKey ? sendCancelRequest(ctx.upstream, upstreamKey, ctx.dial).catch(() => {}) : Promise.resolve());
    try {
      const hello: Buffer[] = [authenticationOk()];
      const unsupported = Object.keys(parameters).filter((k) => k.startsWith('_pq_.'));
      if ((protocol & 0xffff) !== 0 || unsupported.length > 0) hello.push(negotiateProtocolVersion(unsupported));
      for (const [name, value] of upstream.parameters) hello.push(parameterStatus(name, scrubbedParameter(ctx, name, value)));
      hello.push(backendKeyData(processId, secretKey), readyForQuery(upstream.transactionStatus));
      client.write(Buffer.concat(hello));
      const session = new Session({ client, upstream, ctx, reader, clientChunks: iterator, cancelUpstream });
      this.cancelTargets.set(key, { owner: ctx.owner, keyCancel: ctx.keyCancel === true, session });
      await session.run();
    } finally {
      this.cancelTargets.delete(key);
    }
  }

  /** CancelRequest: relay to upstream only for a live session of the same owner (or, between
   *  `keyCancel` streams, of the same key: SessionContext.keyCancel); never answer. */
  private async cancel(client: Duplex, ctx: SessionContext, body: Buffer): Promise<void> {
    try {
      const { processId, secretKey } = decodeCancelRequest(body);
      const request = { processId, secretKey, owner: ctx.owner, keyCancel: ctx.keyCancel === true };
      if (!this.cancelHere(request)) this.onUnknownCancel?.(request);
    } catch {
      // A cancel is best effort, as in PostgreSQL: the client gets no answer either way.
    }
    endStream(client);
  }

  onUnknownCancel?: (cancel: CancelKeyRequest) => void;

  cancelByKey(cancel: CancelKeyRequest): void {
    this.cancelHere(cancel);
  }

  /** Whether a session here holds the key (it is cancelled if the request may cancel it). */
  private cancelHere(c: CancelKeyRequest): boolean {
    const target = this.cancelTargets.get(`${c.processId}:${c.secretKey}`);
    if (!target) return false;
    if (target.owner === c.owner || (c.keyCancel && target.keyCancel)) target.session.cancelRequest();
    return true;
  }

  private refuseProtocol(client: Duplex, ctx: SessionContext, message: string): void {
    safely(() => ctx.hooks.protocolError({ message }));
    sendFatal(client, sqlstateOf('HOOP_PROTOCOL'), `hoop: ${message}`);
  }
}

/** Reads until one startup-phase packet is whole; null if the client went away first. */
async function readStartupPacket(
  reader: FrameReader,
  chunks: AsyncIterator<Buffer>,
): Promise<{ batch: FrameBatch; code: number } | null> {
  let batch = reader.push(Buffer.alloc(0));
  while (batch.frames.length === 0) {
    const next = await chunks.next();
    if (next.done) return null;
    batch = reader.push(next.value);
  }
  const f = batch.frames[0]!;
  if (f.end - f.start < 8) throw new HoopError('HOOP_PROTOCOL', 'invalid startup packet: too short');
  return { batch, code: batch.buffer.readInt32BE(f.start + 4) };
}

/** `first` (bytes already read from the stream), then the stream's own chunks. */
function withFirst(first: Buffer | undefined, rest: AsyncIterator<Buffer>): AsyncIterator<Buffer> {
  if (!first || first.length === 0) return rest;
  let pending: Buffer | null = first;
  return {
    next: () => {
      if (pending === null) return rest.next();
      const value = pending;
      pending = null;
      return Promise.resolve({ done: false, value });
    },
    ...(rest.return ? { return: (v?: unknown) => rest.return!(v) } : {}),
  };
}

/** NegotiateProtocolVersion: we speak 3.0 and none of the `_pq_.` protocol options. */
function negotiateProtocolVersion(unsupported: string[]): Buffer {
  const head = Buffer.allocUnsafe(8);
  head.writeInt32BE(PROTOCOL_VERSION_3);
  head.writeInt32BE(unsupported.length, 4);
  return frame(MessageType.NegotiateProtocolVersion, head, ...unsupported.map(cstring));
}


registerEngine('postgres', (options) => new PostgresEngine(options));

/** A ParameterStatus value of the startup through the session's scrubber; a changed one gets a record of its own. */
function scrubbedParameter(ctx: SessionContext, name: string, value: string): string {
  if (!ctx.scrubText) return value;
  const masked: Record<string, number> = {};
  const out = ctx.scrubText(value, (label) => void (masked[label] = (masked[label] ?? 0) + 1));
  if (out === value) return value;
  safely(() => ctx.hooks.unattributed?.({ kind: 'parameter_status', name, value: out, masked }));
  return out;
}
