/**
 * `hoop connect`'s local listener: psql connects to 127.0.0.1, proves it knows the password
 * made for this run (SCRAM-SHA-256, so the password never crosses even the loopback in clear),
 * and each accepted connection becomes one WebSocket to the gateway's tunnel endpoint carrying raw
 * PostgreSQL bytes, piped both ways with backpressure.
 *
 *   psql ──TCP──▶ local listener ──WebSocket (Bearer token)──▶ gateway engine ──▶ PostgreSQL
 *
 * The listener answers SSLRequest/GSSENCRequest with 'N' and runs SCRAM up to SASLFinal; the
 * gateway's engine then sends AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery.
 * A CancelRequest gets its own WebSocket whose first (and only) message is the request.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import { APPROVAL_REQUEST_ID } from '../api/types.js';
import { errorMessage, isHoopError, type HoopErrorCode } from '../errors.js';
import { CANCEL_REQUEST_CODE, FrameReader, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, type FrameBatch } from '../protocols/postgres/framing.js';
import { sendFatal } from '../protocols/postgres/io.js';
import {
  authenticationSASL,
  authenticationSASLContinue,
  authenticationSASLFinal,
  BodyReader,
  decodeStartupMessage,
  MessageType,
} from '../protocols/postgres/messages.js';
import { SCRAM_SHA_256, ScramServer } from '../protocols/postgres/scram.js';
import { SQLSTATE_INVALID_PASSWORD, sqlstateOf } from '../protocols/postgres/sqlstate.js';
import { webSocketStream } from '../tunnel-stream.js';

export interface TunnelEvent {
  /** hold: the gateway holds a statement of the session until its approval request is decided. */
  kind: 'client-connected' | 'client-closed' | 'refused' | 'error' | 'hold';
  message: string;
  /** The gateway's id for the session (X-Hoop-Session), once the tunnel is open. */
  sessionId?: string;
  /** hold: the approval request's id. */
  request?: string;
}
export interface LocalTunnelOptions {
  gateway: string;               // base URL, http:// or https://
  connection: string;
  token: () => Promise<string>;  // called for each accepted client connection (fresh tokens)
  listen?: string;               // default 127.0.0.1
  port?: number;                 // default 5433; 0 = any free port
  user: string; database: string;
  password?: string;             // the local password for this listener's lifetime; generated (24 random bytes) if absent
  reason?: string;               // sent as header `X-Hoop-Reason`
  singleUse?: boolean;           // accept one authenticated client connection, refuse later ones
  ca?: string;                   // PEM, extra trust for an https gateway
  onEvent?: (e: TunnelEvent) => void;
}
export interface LocalTunnel {
  host: string; port: number; user: string; password: string; database: string; uri: string;
  close(): Promise<void>;
}

/** Like PostgreSQL's authentication_timeout: an idle half-open client is not kept forever. */
const AUTH_TIMEOUT_MS = 60_000;
/** SASL messages are tiny; anything large during authentication is hostile. */
const AUTH_MAX_FRAME = 16 * 1024;
/** The gateway may relay one whole PostgreSQL message (up to 1 GiB) as one WebSocket message. */
const MAX_GATEWAY_MESSAGE = 1024 * 1024 * 1024 + 64 * 1024;

export async function openLocalTunnel(options: LocalTunnelOptions): Promise<LocalTunnel> {
  const host = options.listen ?? '127.0.0.1';
  const password = options.password ?? randomBytes(24).toString('base64url'); // 32 chars
  const sockets = new Set<Socket>();
  /** BackendKeyData of this listener's live sessions: only these may be cancelled through it. */
  const cancelKeys = new Set<string>();
  const admission: Admission = { singleUse: options.singleUse === true, used: false };
  const emit = (e: TunnelEvent) => {
    try {
      options.onEvent?.(e);
    } catch {
      // a broken listener must not break the tunnel
    }
  };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.setNoDelay(true);
    void serveLocalClient(socket, options, password, cancelKeys, admission, emit);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 5433, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostInUri = host.includes(':') ? `[${host}]` : host;
  const uri = `postgresql://${encodeURIComponent(options.user)}:${encodeURIComponent(password)}@${hostInUri}:${port}/${encodeURIComponent(options.database)}?sslmode=disable`;
  return {
    host, port, user: options.user, password, database: options.database, uri,
    close: async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/** `--single-use`: whether the one client connection was already let through. */
interface Admission {
  singleUse: boolean;
  used: boolean;
}

async function serveLocalClient(socket: Socket, options: LocalTunnelOptions, password: string, cancelKeys: Set<string>, admission: Admission, emit: (e: TunnelEvent) => void): Promise<void> {
  const timer = setTimeout(() => socket.destroy(), AUTH_TIMEOUT_MS);
  try {
    const reader = new FrameReader({ startup: true, maxFrameBytes: AUTH_MAX_FRAME, peer: 'client' });
    const source = frameSource(socket, reader);
    const next = source.next;
    let startup: { bytes: Buffer; code: number };
    for (;;) {
      const f = await next();
      if (!f) return;
      if (f.bytes.length < 8) throw new Error('invalid startup packet');
      const code = f.bytes.readInt32BE(4);
      if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
        socket.write('N');
        continue;
      }
      startup = { bytes: f.bytes, code };
      break;
    }
    if (startup.code === CANCEL_REQUEST_CODE) {
      clearTimeout(timer);
      // A CancelRequest is unauthenticated (as in PostgreSQL): any local user can send one. Only
      // a key this listener handed to one of its own live sessions may use the user's token.
      const key = startup.bytes.length === 16 ? startup.bytes.subarray(8, 16).toString('hex') : null;
      if (key === null || !cancelKeys.has(key)) {
        socket.destroy();
        return;
      }
      await relayCancel(socket, options, startup.bytes, emit);
      return;
    }
    const params = decodeStartupMessage(startup.bytes.subarray(4)).parameters;
    const user = params.user ?? '';
    if (admission.singleUse && admission.used) return refuseUsed(socket, emit, timer);
    if (!(await authenticateScram(socket, next, password, user))) {
      emit({ kind: 'refused', message: `local client refused: password authentication failed for user "${user}"` });
      return;
    }
    clearTimeout(timer);
    // Two clients may have raced through SCRAM: the first to finish is the one.
    if (admission.singleUse && admission.used) return refuseUsed(socket, emit, timer);
    admission.used = true;
    const rest = source.detach(); // psql waits for AuthenticationOk, but forward anything it sent
    await openTunnel(socket, options, startup.bytes, rest, cancelKeys, emit);
  } catch (err) {
    clearTimeout(timer);
    sendFatal(socket, sqlstateOf('HOOP_PROTOCOL'), `hoop: ${errorMessage(err)}`);
  }
}

function refuseUsed(socket: Socket, emit: (e: TunnelEvent) => void, timer: NodeJS.Timeout): void {
  clearTimeout(timer);
  const reason = 'this tunnel is --single-use and its one client connection was already made; run `hoop connect` again';
  emit({ kind: 'refused', message: `local client refused: ${reason}` });
  sendFatal(socket, sqlstateOf('HOOP_FORBIDDEN'), `hoop: ${reason}`);
}

/** SCRAM-SHA-256 with the listener's password, up to and including AuthenticationSASLFinal. */
async function authenticateScram(
  socket: Socket,
  next: () => Promise<{ type: number; bytes: Buffer; body: Buffer } | null>,
  password: string,
  user: string,
): Promise<boolean> {
  socket.write(authenticationSASL([SCRAM_SHA_256]));
  const initial = await next();
  if (!initial) return false;
  if (initial.type !== MessageType.PasswordMessage) throw new Error('expected SASLInitialResponse');
  const r = new BodyReader(initial.body, 'SASLInitialResponse');
  if (r.cstring() !== SCRAM_SHA_256) throw new Error('unsupported SASL mechanism');
  const len = r.int32();
  const clientFirst = r.bytes(len).toString('utf8');
  const scram = new ScramServer(password);
  socket.write(authenticationSASLContinue(scram.serverFirstMessage(clientFirst)));
  const response = await next();
  if (!response) return false;
  if (response.type !== MessageType.PasswordMessage) throw new Error('expected SASLResponse');
  const result = scram.verifyClientFinal(response.body.toString('utf8'));
  if (!result.ok) {
    sendFatal(socket, SQLSTATE_INVALID_PASSWORD, `password authentication failed for user "${user}"`);
    return false;
  }
  socket.write(authenticationSASLFinal(result.serverFinal));
  return true;
}

/** One WebSocket to the gateway; the StartupMessage goes first, then bytes flow both ways. */
async function openTunnel(socket: Socket, options: LocalTunnelOptions, first: Buffer, rest: Buffer, cancelKeys: Set<string>, emit: (e: TunnelEvent) => void): Promise<void> {
  const opened = await connectGateway(socket, options, emit);
  if (!opened) return;
  const { ws, sessionId } = opened;
  const client = `client ${socket.remoteAddress}:${socket.remotePort}`;
  const session = sessionId ? { sessionId } : {};
  const shortId = sessionId ? ` (session ${sessionId.slice(0, 8)})` : '';
  emit({ kind: 'client-connected', message: `${client} connected to ${options.connection}${shortId}`, ...session });
  const stream = webSocketStream(ws, { onText: (text) => {
    const hold = holdEventOf(text);
    if (hold) emit({ kind: 'hold', message: hold.notice, request: hold.request, ...session });
  } });
  stream.on('error', () => {});
  stream.write(first);
  if (rest.length > 0) stream.write(rest);
  pipeBoth(socket, stream);
  let key: string | null = null;
  watchBackendKey(stream, (k) => {
    key = k;
    cancelKeys.add(k);
  });
  await new Promise<void>((r) => {
    let n = 0;
    const done = () => ++n === 2 && r();
    socket.once('close', done);
    stream.once('close', done);
  });
  if (key !== null) cancelKeys.delete(key);
  emit({ kind: 'client-closed', message: `${client} disconnected${shortId}`, ...session });
}

/** Longest hold notice shown: the gateway's are one line of about 150 characters. */
const MAX_NOTICE = 1_000;

/**
 * The gateway's out-of-band event (a text message, asked for with X-Hoop-Events): a hold, or
 * null for anything else — an event this version does not know, or not one at all, is ignored.
 */
export function holdEventOf(text: string): { request: string; notice: string } | null {
  let e: unknown;
  try {
    e = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof e !== 'object' || e === null) return null;
  const { event, request, notice } = e as Record<string, unknown>;
  if (event !== 'hold' || typeof request !== 'string' || !APPROVAL_REQUEST_ID.test(request) || typeof notice !== 'string') return null;
  return { request, notice: notice.slice(0, MAX_NOTICE) };
}

/** The gateway's first messages are small: past this many bytes no BackendKeyData is coming. */
const BACKEND_KEY_SEARCH_BYTES = 64 * 1024;

/**
 * Finds the BackendKeyData among the gateway's first messages (AuthenticationOk, ParameterStatus,
 * BackendKeyData, ReadyForQuery) and stops looking at ReadyForQuery, an ErrorResponse, a malformed
 * frame, or 64 KiB. It only watches: the bytes reach psql through the pipe unchanged. The key is
 * the 8 body bytes (process id, secret key), as a CancelRequest carries them.
 */
export function watchBackendKey(stream: Duplex, onKey: (key: string) => void): void {
  const reader = new FrameReader({ maxFrameBytes: BACKEND_KEY_SEARCH_BYTES, peer: 'gateway' });
  let seen = 0;
  const stop = (): void => {
    stream.off('data', onData);
  };
  function onData(chunk: Buffer): void {
    seen += chunk.length;
    let batch: FrameBatch;
    try {
      batch = reader.push(chunk);
    } catch {
      return stop(); // not ours to judge: psql gets the same bytes and its own error
    }
    for (const f of batch.frames) {
      if (f.type === MessageType.BackendKeyData && f.end - f.bodyStart === 8) {
        onKey(batch.buffer.subarray(f.bodyStart, f.end).toString('hex'));
        return stop();
      }
      if (f.type === MessageType.ReadyForQuery || f.type === MessageType.ErrorResponse) return stop();
    }
    if (seen > BACKEND_KEY_SEARCH_BYTES) stop();
  }
  stream.on('data', onData);
}

/** A CancelRequest travels on its own WebSocket; PostgreSQL never answers one. */
async function relayCancel(socket: Socket, options: LocalTunnelOptions, request: Buffer, emit: (e: TunnelEvent) => void): Promise<void> {
  socket.destroy();
  const ws = (await connectGateway(null, options, emit))?.ws;
  if (!ws) return;
  await new Promise<void>((resolve) => {
    ws.send(request, () => ws.close(1000));
    ws.once('close', () => resolve());
    setTimeout(() => {
      ws.terminate();
      resolve();
    }, 10_000).unref();
  });
}

/** Opens the tunnel WebSocket; on refusal sends psql a FATAL with the gateway's message. */
async function connectGateway(socket: Socket | null, options: LocalTunnelOptions, emit: (e: TunnelEvent) => void): Promise<{ ws: WebSocket; sessionId: string | null } | null> {
  let token: string;
  try {
    token = await options.token();
  } catch (err) {
    // A HoopError says what to do itself (log in again, restart `hoop connect`); anything else is unexplained.
    const message = isHoopError(err) ? `hoop: ${err.message}` : `hoop: no usable token: ${errorMessage(err)}`;
    emit({ kind: 'refused', message });
    if (socket) sendFatal(socket, sqlstateOf(isHoopError(err) ? err.code : 'HOOP_NOT_LOGGED_IN'), message);
    return null;
  }
  const url = tunnelUrl(options.gateway, options.connection);
  // X-Hoop-Events: this client reads text messages as events (a hold), never as session bytes.
  const headers: Record<string, string> = { Authorization: `Bearer ${token}`, 'X-Hoop-Events': '1' };
  // Header values must be one line of visible ASCII: anything else is replaced, not smuggled.
  if (options.reason) headers['X-Hoop-Reason'] = options.reason.replace(/[^\x20-\x7e]/g, '?');
  return new Promise((resolve) => {
    // ws's default 100 MiB cap would drop a session that returns a huge value
    const ws = new WebSocket(url, { headers, ca: options.ca, perMessageDeflate: false, handshakeTimeout: 30_000, maxPayload: MAX_GATEWAY_MESSAGE });
    ws.binaryType = 'nodebuffer';
    let settled = false;
    let sessionId: string | null = null;
    ws.once('upgrade', (res) => {
      const id = res.headers['x-hoop-session'];
      if (typeof id === 'string' && SESSION_ID.test(id)) sessionId = id; // shown on a terminal: only a UUID
    });
    const fail = (kind: 'refused' | 'error', code: string, message: string) => {
      if (settled) return;
      settled = true;
      emit({ kind, message });
      if (socket) sendFatal(socket, code, message);
      ws.terminate();
      resolve(null);
    };
    ws.once('open', () => {
      settled = true;
      resolve({ ws, sessionId });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 64 * 1024) body += d;
      });
      res.on('end', () => {
        const refusal = parseRefusal(res.statusCode ?? 0, body);
        fail('refused', refusal.sqlstate, `hoop: ${refusal.message}`);
      });
      res.on('error', () => fail('refused', '08006', `hoop: gateway refused the tunnel (HTTP ${res.statusCode})`));
    });
    ws.once('error', (err) => fail('error', sqlstateOf('HOOP_NETWORK'), `hoop: cannot reach the gateway at ${options.gateway}: ${errorMessage(err)}`));
  });
}

const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function tunnelUrl(gateway: string, connection: string): string {
  const u = new URL(gateway);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/api/v1/connections/${encodeURIComponent(connection)}/tunnel`;
  return u.toString();
}

/** Reads the gateway's `{"error":{"code","message"}}` body; falls back to the HTTP status. */
export function parseRefusal(status: number, body: string): { code: string | null; message: string; sqlstate: string } {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
    const code = typeof parsed.error?.code === 'string' ? parsed.error.code : null;
    const message = typeof parsed.error?.message === 'string' ? parsed.error.message.replace(/[\r\n]+/g, ' ') : null;
    if (message) return { code, message, sqlstate: code?.startsWith('HOOP_') ? sqlstateOf(code as HoopErrorCode) : '28000' };
  } catch {
    // not JSON: use the status below
  }
  const bystatus: Record<number, HoopErrorCode> = { 401: 'HOOP_AUTH_REJECTED', 403: 'HOOP_FORBIDDEN', 404: 'HOOP_NOT_FOUND' };
  const code = bystatus[status] ?? 'HOOP_NETWORK';
  return { code, message: `gateway refused the tunnel (HTTP ${status})`, sqlstate: sqlstateOf(code) };
}


/** Pipes both ways with backpressure (pipe pauses the source while the destination is full). */
function pipeBoth(socket: Socket, stream: Duplex): void {
  socket.pipe(stream);
  stream.pipe(socket);
  const end = () => {
    socket.destroy();
    stream.destroy();
  };
  socket.once('close', end);
  stream.once('close', () => {
    // let buffered bytes (e.g. a final ErrorResponse) reach psql before closing
    if (!socket.destroyed) socket.end();
  });
}

/** Pulls whole frames from the socket through the reader (startup phase first, then typed). */
interface FrameSource {
  next(): Promise<{ type: number; bytes: Buffer; body: Buffer } | null>;
  /** Stops framing: pauses the socket and returns every byte received but not yet consumed. */
  detach(): Buffer;
}

function frameSource(socket: Socket, reader: FrameReader): FrameSource {
  const queue: { type: number; bytes: Buffer; body: Buffer }[] = [];
  let waiting: ((v: unknown) => void) | null = null;
  let ended = false;
  let failure: unknown = null;
  const take = (batch: FrameBatch) => {
    for (const f of batch.frames) queue.push({ type: f.type, bytes: batch.buffer.subarray(f.start, f.end), body: batch.buffer.subarray(f.bodyStart, f.end) });
  };
  const wake = () => {
    const w = waiting;
    waiting = null;
    w?.(undefined);
  };
  const onData = (chunk: Buffer) => {
    try {
      take(reader.push(chunk));
      // Startup packets come one per push: drain what arrived behind them.
      for (let b = reader.push(Buffer.alloc(0)); b.frames.length > 0; b = reader.push(Buffer.alloc(0))) take(b);
    } catch (err) {
      failure = err;
    }
    wake();
  };
  socket.on('data', onData);
  socket.once('close', () => {
    ended = true;
    wake();
  });
  return {
    next: async () => {
      for (;;) {
        if (failure) throw failure;
        const f = queue.shift();
        if (f) return f;
        if (ended) return null;
        await new Promise((r) => (waiting = r));
      }
    },
    detach: () => {
      socket.pause();
      socket.off('data', onData);
      return Buffer.concat([...queue.splice(0).map((f) => f.bytes), reader.takePending()]);
    },
  };
}
