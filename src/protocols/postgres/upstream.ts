/**
 * Opens the gateway's own connection to the upstream PostgreSQL: TCP, TLS per `sslmode`, the
 * StartupMessage, authentication (SCRAM-SHA-256, MD5, cleartext or trust) until ReadyForQuery.
 *
 * Errors are HoopError('HOOP_UPSTREAM') with messages safe to show to the client: they name the
 * host and the server's own error text, never the password.
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { HoopError, ProtocolError, errorMessage } from '../../errors.js';
import { isLoopbackHost } from '../../net/loopback.js';
import { FrameReader, type Frame } from './framing.js';
import {
  AuthCode,
  BodyReader,
  MessageType,
  cancelRequest,
  cstring,
  decodeBackendKeyData,
  decodeNoticeFields,
  decodeParameterStatus,
  decodeReadyForQuery,
  frame,
  sslRequest,
  startupMessage,
  type TransactionStatus,
} from './messages.js';
import { md5PasswordHash, SCRAM_SHA_256, ScramClient } from './scram.js';
import type { UpstreamConfig } from '../engine.js';

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Messages during startup are small; a server sending more is broken or hostile. */
const STARTUP_MAX_FRAME = 1024 * 1024;

/** Opens the upstream byte stream (SessionContext.dial). */
export type Dial = () => Promise<Duplex>;

export interface UpstreamConnection {
  socket: Duplex;
  /** ParameterStatus values in the order the server sent them. */
  parameters: [string, string][];
  backendKey: { processId: number; secretKey: number } | null;
  transactionStatus: TransactionStatus;
  /** Bytes the server sent after ReadyForQuery (normally none): process them first. */
  leftover: Buffer;
  tls: boolean;
}

const NOT_POSTGRES_HINT = 'check that host and port name a PostgreSQL server, not a proxy or another service';

/** Where connecting upstream failed: what a client may be told, without host, port, user or the server's words. */
type UpstreamPhase = 'connect' | 'timeout' | 'tls' | 'login';
const CLIENT_MESSAGES: Record<UpstreamPhase, string> = {
  connect: 'the database behind this connection is unreachable from the gateway',
  timeout: 'the database behind this connection did not answer the gateway in time',
  tls: 'the gateway could not set up TLS with the database as this connection requires',
  login: 'the gateway could not log in to the database behind this connection',
};

/**
 * Connecting upstream failed. `message` has the details for the gateway's log and audit record
 * (address, user, the server's error); `clientMessage` is what the person at psql is told: the
 * phase and, for a server refusal, its SQLSTATE — infrastructure details stay with the operators.
 */
export class UpstreamConnectError extends HoopError {
  readonly clientMessage: string;
  constructor(detail: HoopError, phase: UpstreamPhase, role?: string) {
    super('HOOP_UPSTREAM', detail.message, { cause: detail.cause ?? detail, ...(detail.hint ? { hint: detail.hint } : {}) });
    const sqlstate = /\(SQLSTATE ([0-9A-Z]{5})\)$/.exec(detail.message)?.[1];
    let what = phase === 'login' && sqlstate ? `the database refused the gateway's login (SQLSTATE ${sqlstate})` : CLIENT_MESSAGES[phase];
    // The role mapped from the caller's own groups is theirs to know; why the server refused it
    // (no such role, the service role not a member of it) is the operators'.
    if (phase === 'login' && role !== undefined && sqlstate !== undefined && ROLE_REFUSALS.has(sqlstate) && detail.message.includes(`"${role}"`)) {
      what = `the database refused the role ${role} that this connection maps your groups to (SQLSTATE ${sqlstate})`;
    }
    // A dial that knows what the client may be told (the gateway's agent registry: no agent
    // connected, the agent refused the target) says it itself.
    const told = (detail as { clientMessage?: unknown }).clientMessage;
    this.clientMessage = typeof told === 'string' ? told : `${what}; an administrator can find the cause in the gateway's log`;
  }
}

/** What the server answers a startup `role` it will not set: 42501 the login is not a member of
 *  it, 22023 no such role (an invalid value of the setting), 42704 the same in other versions. */
const ROLE_REFUSALS = new Set(['42501', '22023', '42704']);

/**
 * The StartupMessage `options` value that sets `role`: command-line switches as libpq sends
 * PGOPTIONS, where a backslash escapes the next character, so spaces and backslashes in the value
 * are escaped (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-OPTIONS).
 */
export function roleOption(role: string): string {
  return `-c role=${role.replace(/[\\ ]/g, (c) => `\\${c}`)}`;
}

export function upstreamError(cfg: UpstreamConfig, message: string, cause?: unknown, hint?: string): HoopError {
  return new HoopError('HOOP_UPSTREAM', `upstream ${cfg.host}:${cfg.port}: ${message}`, {
    cause,
    hint: hint ?? 'check the connection settings and that the database is reachable from the gateway',
  });
}

/** Connects, negotiates TLS and authenticates; resolves at the first ReadyForQuery. */
export async function connectUpstream(
  cfg: UpstreamConfig,
  options: { parameters?: Record<string, string>; dial: Dial },
): Promise<UpstreamConnection> {
  const timeoutMs = cfg.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  let socket: Duplex | null = null;
  let phase: UpstreamPhase = 'connect';
  const timer = setTimeout(() => {
    phase = 'timeout';
    socket?.destroy(upstreamError(cfg, `timed out after ${timeoutMs} ms`));
  }, timeoutMs);
  try {
    socket = await dialed(cfg, options.dial);
    phase = 'tls';
    const tls = await negotiateTls(cfg, socket, (s) => (socket = s));
    phase = 'login';
    // The connection fixes user, database and role; the client may pass harmless session defaults.
    const params: Record<string, string> = { client_encoding: 'UTF8', ...options.parameters, user: cfg.user, database: cfg.database };
    // A role given at startup is the session's reset value (not a SET ROLE after login, which
    // RESET ROLE, RESET ALL and DISCARD ALL would undo); the server checks the membership.
    if (cfg.role !== undefined) params.options = roleOption(cfg.role);
    socket.write(startupMessage(params));
    const result = await authenticate(cfg, socket);
    return { ...result, socket, tls };
  } catch (err) {
    socket?.destroy();
    throw new UpstreamConnectError(err instanceof HoopError ? err : upstreamError(cfg, errorMessage(err), err), phase, cfg.role);
  } finally {
    clearTimeout(timer);
  }
}

/** Sends a CancelRequest for `key` on a fresh connection (over TLS when sslmode asks for it). */
export async function sendCancelRequest(cfg: UpstreamConfig, key: { processId: number; secretKey: number }, dial: Dial): Promise<void> {
  let socket: Duplex | null = null;
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    socket?.destroy();
  }, cfg.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  try {
    socket = await dialed(cfg, dial);
    if (expired) return;
    await negotiateTls(cfg, socket, (s) => (socket = s));
    const s = socket;
    // The server closes the connection once it has read the request.
    await new Promise<void>((resolve) => {
      s.once('close', () => resolve());
      s.once('error', () => resolve());
      s.resume();
      s.end(cancelRequest(key.processId, key.secretKey));
    });
  } finally {
    clearTimeout(timer);
    socket?.destroy();
  }
}

async function dialed(cfg: UpstreamConfig, dial: Dial): Promise<Duplex> {
  try {
    return await dial();
  } catch (err) {
    throw err instanceof HoopError ? err : upstreamError(cfg, `could not connect: ${errorMessage(err)}`, err);
  }
}

/** The direct path: a TCP connection to host:port (the agent's streams come in its place). */
export function tcpDial(cfg: { host: string; port: number }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: cfg.host, port: cfg.port });
    s.setNoDelay(true);
    s.setKeepAlive(true, 60_000); // notice a dead upstream behind a silent network
    s.once('connect', () => {
      s.off('error', onError);
      resolve(s);
    });
    const onError = (err: Error) => reject(new HoopError('HOOP_UPSTREAM', `upstream ${cfg.host}:${cfg.port}: could not connect: ${errorMessage(err)}`, { cause: err, hint: 'check the connection settings and that the database is reachable from the gateway' }));
    s.once('error', onError);
    s.once('close', () => reject(new HoopError('HOOP_UPSTREAM', `upstream ${cfg.host}:${cfg.port}: connection closed while connecting`)));
  });
}

/** SSLRequest and the TLS handshake per sslmode (libpq semantics). */
async function negotiateTls(
  cfg: UpstreamConfig,
  socket: Duplex,
  track: (s: TLSSocket) => void,
): Promise<boolean> {
  if (cfg.sslmode === 'disable') return false;
  socket.write(sslRequest());
  const answer = await readOneByte(cfg, socket);
  if (answer === 0x4e /* N */) {
    if (cfg.sslmode === 'prefer') return false;
    throw upstreamError(cfg, `server does not support SSL, but sslmode is ${cfg.sslmode}`);
  }
  if (answer !== 0x53 /* S */) {
    const shown = answer >= 0x20 && answer < 0x7f ? `'${String.fromCharCode(answer)}'` : `0x${answer.toString(16).padStart(2, '0')}`;
    throw upstreamError(cfg, `its answer to SSLRequest is not PostgreSQL's (${shown})`, undefined, NOT_POSTGRES_HINT);
  }
  const verify = cfg.sslmode === 'verify-ca' || cfg.sslmode === 'verify-full';
  const options: ConnectionOptions = {
    socket,
    ca: cfg.ca,
    rejectUnauthorized: verify,
    // SNI must be a host name; an IP address is checked against the certificate's IP SANs.
    servername: isIP(cfg.host) ? undefined : cfg.host,
    host: cfg.host,
  };
  // verify-ca checks the chain only; verify-full also the host name (Node's default check).
  if (cfg.sslmode !== 'verify-full') options.checkServerIdentity = () => undefined;
  const tlsSocket = tlsConnect(options);
  track(tlsSocket);
  await new Promise<void>((resolve, reject) => {
    tlsSocket.once('secureConnect', () => {
      tlsSocket.off('error', onError);
      resolve();
    });
    const onError = (err: Error) => reject(upstreamError(cfg, `TLS handshake failed (sslmode=${cfg.sslmode}): ${errorMessage(err)}`, err));
    tlsSocket.once('error', onError);
  });
  tlsSocket.setNoDelay(true);
  return true;
}

/** Reads exactly the one-byte SSLRequest answer; more bytes would be injected plaintext (CVE-2021-23222). */
function readOneByte(cfg: UpstreamConfig, socket: Duplex): Promise<number> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      socket.pause();
      cleanup();
      // Bytes behind an 'S' or 'N' would be read as if from the server after the handshake
      // (CVE-2021-23214); anything else first is not a PostgreSQL answer, which the caller names.
      const answer = chunk[0]!;
      if (chunk.length !== 1 && (answer === 0x53 || answer === 0x4e)) reject(upstreamError(cfg, 'server sent unexpected data after the SSLRequest answer'));
      else resolve(answer);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(upstreamError(cfg, errorMessage(err), err));
    };
    const onClose = () => {
      cleanup();
      reject(upstreamError(cfg, 'connection closed during SSL negotiation'));
    };
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.resume();
  });
}

interface StartupResult {
  parameters: [string, string][];
  backendKey: { processId: number; secretKey: number } | null;
  transactionStatus: TransactionStatus;
  leftover: Buffer;
}

/** Cleartext passwords go only to a TLS-verified server, or to this machine's loopback interface. */
function cleartextPasswordSafe(cfg: UpstreamConfig): boolean {
  return cfg.sslmode === 'verify-full' || cfg.sslmode === 'verify-ca' || isLoopbackHost(cfg.host);
}

/** Runs the authentication exchange and reads until ReadyForQuery. */
function authenticate(cfg: UpstreamConfig, socket: Duplex): Promise<StartupResult> {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader({ maxFrameBytes: STARTUP_MAX_FRAME, peer: 'upstream' });
    const parameters: [string, string][] = [];
    let backendKey: StartupResult['backendKey'] = null;
    let scram: ScramClient | null = null;
    /** Set once SASLFinal proved that the server knows the password. */
    let scramVerified = false;
    let done = false;
    const finish = (err: unknown, result?: StartupResult) => {
      done = true;
      socket.pause();
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (!err) resolve(result!);
      else if (err instanceof ProtocolError) reject(upstreamError(cfg, `its answer is not PostgreSQL's (${err.message})`, err, NOT_POSTGRES_HINT));
      else reject(err instanceof HoopError ? err : upstreamError(cfg, errorMessage(err), err));
    };
    const needPassword = (): string => {
      if (cfg.password === undefined || cfg.password === '') {
        throw upstreamError(cfg, 'the server requested a password, but the connection has none configured');
      }
      return cfg.password;
    };
    const onAuth = (body: Buffer) => {
      const r = new BodyReader(body, 'Authentication');
      const code = r.int32();
      switch (code) {
        case AuthCode.Ok:
          // A server (or someone in the middle) that starts SCRAM must finish it: AuthenticationOk
          // without a verified SASLFinal would skip the proof that it knows the password.
          if (scram && !scramVerified) throw upstreamError(cfg, 'the server ended SCRAM authentication without proving it knows the password');
          return;
        case AuthCode.CleartextPassword:
          // The password itself goes on the wire: only to a server whose identity TLS verified,
          // or on this machine. Anyone in the middle of an unverified connection could ask for it.
          if (!cleartextPasswordSafe(cfg)) {
            throw upstreamError(cfg, `the server asked for the password in cleartext over a connection whose server is not verified (sslmode ${cfg.sslmode}); refusing to send it`, undefined, 'use sslmode verify-full (or verify-ca), or SCRAM-SHA-256 on the server');
          }
          socket.write(frame(MessageType.PasswordMessage, cstring(needPassword())));
          return;
        case AuthCode.MD5Password:
          socket.write(frame(MessageType.PasswordMessage, cstring(md5PasswordHash(cfg.user, needPassword(), r.bytes(4)))));
          return;
        case AuthCode.SASL: {
          const mechanisms: string[] = [];
          for (let m = r.cstring(); m !== ''; m = r.cstring()) mechanisms.push(m);
          if (!mechanisms.includes(SCRAM_SHA_256)) {
            throw upstreamError(cfg, `no supported SASL mechanism (server offers ${mechanisms.join(', ')})`);
          }
          scram = new ScramClient(needPassword());
          const first = Buffer.from(scram.clientFirstMessage(), 'utf8');
          const len = Buffer.allocUnsafe(4);
          len.writeInt32BE(first.length);
          socket.write(frame(MessageType.PasswordMessage, cstring(SCRAM_SHA_256), len, first));
          return;
        }
        case AuthCode.SASLContinue:
          if (!scram) throw upstreamError(cfg, 'unexpected SASLContinue');
          socket.write(frame(MessageType.PasswordMessage, Buffer.from(scram.clientFinalMessage(r.bytes(r.remaining).toString('utf8')), 'utf8')));
          return;
        case AuthCode.SASLFinal:
          if (!scram) throw upstreamError(cfg, 'unexpected SASLFinal');
          scram.verifyServerFinal(r.bytes(r.remaining).toString('utf8'));
          scramVerified = true;
          return;
        default:
          throw upstreamError(cfg, `unsupported authentication method (code ${code})`);
      }
    };
    const onFrame = (buf: Buffer, f: Frame): StartupResult | null => {
      const body = buf.subarray(f.bodyStart, f.end);
      switch (f.type) {
        case MessageType.Authentication:
          onAuth(body);
          return null;
        case MessageType.ErrorResponse: {
          const e = decodeNoticeFields(body);
          throw upstreamError(cfg, `${e.M ?? 'error'} (SQLSTATE ${e.C ?? 'unknown'})`);
        }
        case MessageType.ParameterStatus: {
          const p = decodeParameterStatus(body);
          parameters.push([p.name, p.value]);
          return null;
        }
        case MessageType.BackendKeyData:
          backendKey = decodeBackendKeyData(body);
          return null;
        case MessageType.ReadyForQuery:
          return { parameters, backendKey, transactionStatus: decodeReadyForQuery(body), leftover: Buffer.alloc(0) };
        default:
          return null; // NoticeResponse, NegotiateProtocolVersion: nothing to do
      }
    };
    const onData = (chunk: Buffer) => {
      if (done) return;
      try {
        const batch = reader.push(chunk);
        for (let i = 0; i < batch.frames.length; i++) {
          const result = onFrame(batch.buffer, batch.frames[i]!);
          if (result) {
            // Everything after this frame, whole or partial, belongs to the session.
            result.leftover = Buffer.from(batch.buffer.subarray(batch.frames[i]!.end));
            finish(null, result);
            return;
          }
        }
      } catch (err) {
        finish(err);
      }
    };
    const onError = (err: Error) => finish(upstreamError(cfg, errorMessage(err), err));
    const onClose = () => finish(upstreamError(cfg, 'server closed the connection during startup'));
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.resume();
  });
}
