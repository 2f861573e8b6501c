/**
 * The server side of a PostgreSQL client's login, for a listener that authenticates the client
 * itself (the gateway's own PostgreSQL listener) before the engine serves the session:
 *
 *   client                                   ClientLogin
 *     SSLRequest              ─▶  'S' + TLS handshake (the listener's certificate), or 'N'
 *     GSSENCRequest           ─▶  'N'
 *     CancelRequest           ─▶  { kind: 'cancel' }: handed to the engine as it is
 *     StartupMessage          ─▶  { kind: 'startup', parameters }: the caller decides
 *                             ◀─  AuthenticationCleartextPassword   (askPassword)
 *     PasswordMessage         ─▶  the password
 *                                 handOff(): the startup packet and anything after it, for the
 *                                 engine (SessionContext.preread), which answers AuthenticationOk
 *
 * Bytes a client sends after SSLRequest but before the TLS handshake are refused, never read as
 * part of the encrypted session (CVE-2021-23214). The password is a bearer credential: the caller
 * asks for it only over TLS (or from loopback), and it is never logged.
 */
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ProtocolError } from '../../errors.js';
import { CANCEL_REQUEST_CODE, FrameReader, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, type Frame, type FrameBatch } from './framing.js';
import { chunksOf, sendFatal } from './io.js';
import { authenticationCleartextPassword, decodeStartupMessage, MessageType } from './messages.js';

/** A bearer token (a JWT with many groups) fits easily; anything larger during login is hostile. */
const LOGIN_MAX_FRAME = 32 * 1024;

export type Opening =
  | { kind: 'cancel' }
  | { kind: 'startup'; protocol: number; parameters: Record<string, string> };

interface Packet {
  type: number;
  bytes: Buffer;
  body: Buffer;
}

/** One client connection during its login; `stream` is the socket, or the TLS socket over it. */
export class ClientLogin {
  private reader = new FrameReader({ startup: true, maxFrameBytes: LOGIN_MAX_FRAME, peer: 'client' });
  private chunks: AsyncIterator<Buffer>;
  private queue: Packet[] = [];
  private first: Buffer | null = null;
  private encryptedStream: TLSSocket | null = null;

  constructor(private readonly socket: Socket, private readonly tls: SecureContext | null) {
    this.chunks = chunksOf(socket)[Symbol.asyncIterator]();
  }

  /** The stream the session continues on. */
  get stream(): Duplex {
    return this.encryptedStream ?? this.socket;
  }

  /** Whether the session runs over TLS. */
  get encrypted(): boolean {
    return this.encryptedStream !== null;
  }

  /** The TLS protocol version, once encrypted (for the record). */
  get tlsVersion(): string | null {
    return this.encryptedStream?.getProtocol() ?? null;
  }

  /**
   * Reads startup-phase packets until a StartupMessage or a CancelRequest, answering SSLRequest
   * (TLS, when the listener has a certificate) and GSSENCRequest ('N') on the way. Null: the
   * client went away. Throws ProtocolError on malformed packets.
   */
  async open(): Promise<Opening | null> {
    for (;;) {
      const p = await this.next();
      if (!p) return null;
      if (p.bytes.length < 8) throw new ProtocolError('invalid startup packet: too short');
      const code = p.bytes.readInt32BE(4);
      if (code === SSL_REQUEST_CODE) {
        if (this.encrypted) throw new ProtocolError('SSLRequest inside TLS');
        if (!this.tls) {
          this.socket.write('N');
          continue;
        }
        await this.startTls(this.tls);
        continue;
      }
      if (code === GSSENC_REQUEST_CODE) {
        if (this.encrypted) throw new ProtocolError('GSSENCRequest inside TLS');
        this.socket.write('N'); // GSSAPI encryption is not offered; libpq then tries TLS or plain
        continue;
      }
      this.first = p.bytes;
      if (code === CANCEL_REQUEST_CODE) return { kind: 'cancel' };
      const startup = decodeStartupMessage(p.body);
      return { kind: 'startup', protocol: startup.protocol, parameters: startup.parameters };
    }
  }

  /**
   * AuthenticationCleartextPassword, then the client's PasswordMessage: the password, or null if
   * the client left (or sent Terminate). Anything else is a protocol error.
   */
  async askPassword(): Promise<string | null> {
    this.stream.write(authenticationCleartextPassword());
    const p = await this.next();
    if (!p || p.type === MessageType.Terminate) return null;
    if (p.type !== MessageType.PasswordMessage) throw new ProtocolError('expected a password message');
    const nul = p.body.indexOf(0);
    if (nul !== p.body.length - 1) throw new ProtocolError('malformed password message');
    return p.body.toString('utf8', 0, nul);
  }

  /** A FATAL ErrorResponse, then the end of the connection. */
  refuse(code: string, message: string): void {
    sendFatal(this.stream, code, message);
  }

  /**
   * Stops reading: the first packet (StartupMessage or CancelRequest) and every byte received
   * after it, for the engine to read first. The stream is left paused, with no reader attached.
   */
  async handOff(): Promise<Buffer> {
    await this.chunks.return?.();
    const rest = [...this.queue.splice(0).map((p) => p.bytes), this.reader.takePending()];
    return Buffer.concat([this.first ?? Buffer.alloc(0), ...rest]);
  }

  /** 'S', then the TLS handshake over the same socket; nothing may have been sent in between. */
  private async startTls(context: SecureContext): Promise<void> {
    if (this.queue.length > 0 || this.reader.pendingBytes > 0 || this.socket.readableLength > 0) {
      throw new ProtocolError('unencrypted bytes after SSLRequest, before the TLS handshake');
    }
    await this.chunks.return?.();
    this.socket.write('S');
    const secure = new TLSSocket(this.socket, { isServer: true, secureContext: context });
    await new Promise<void>((resolve, reject) => {
      const fail = (err?: Error) => {
        secure.off('secure', ok);
        // Nothing can be said to a client mid-handshake in a form it would read: just close.
        secure.destroy();
        this.socket.destroy();
        reject(new ProtocolError(`TLS handshake failed${err ? `: ${err.message}` : ''}`));
      };
      const ok = () => {
        secure.off('error', fail);
        secure.off('close', fail);
        resolve();
      };
      secure.once('secure', ok);
      secure.once('error', fail);
      secure.once('close', () => fail());
    });
    secure.on('error', () => {}); // errors surface as 'close'
    this.encryptedStream = secure;
    this.reader = new FrameReader({ startup: true, maxFrameBytes: LOGIN_MAX_FRAME, peer: 'client' });
    this.chunks = chunksOf(secure)[Symbol.asyncIterator]();
  }

  private async next(): Promise<Packet | null> {
    for (;;) {
      const queued = this.queue.shift();
      if (queued) return queued;
      // Startup packets come one per push: take what arrived behind one before reading more.
      let batch = this.reader.push(Buffer.alloc(0));
      if (batch.frames.length === 0) {
        const chunk = await this.chunks.next();
        if (chunk.done) return null;
        batch = this.reader.push(chunk.value);
      }
      this.take(batch);
    }
  }

  private take(batch: FrameBatch): void {
    for (const f of batch.frames as Frame[]) {
      this.queue.push({ type: f.type, bytes: batch.buffer.subarray(f.start, f.end), body: batch.buffer.subarray(f.bodyStart, f.end) });
    }
  }
}

/**
 * The value of `-c NAME=VALUE` (or `--NAME=VALUE`) in a StartupMessage's `options`, split as the
 * server splits them (pg_split_opts: whitespace separates, a backslash takes the next character
 * literally); the last one given wins. Null when absent.
 */
export function startupOption(options: string | undefined, name: string): string | null {
  if (options === undefined) return null;
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < options.length; i++) {
    const c = options[i]!;
    if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      inWord = true;
      if (c === '\\' && i + 1 < options.length) word += options[++i];
      else word += c;
    }
  }
  if (inWord) words.push(word);
  let found: string | null = null;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    let setting: string | null = null;
    if (w === '-c') setting = words[++i] ?? null;
    else if (w.startsWith('-c')) setting = w.slice(2);
    else if (w.startsWith('--')) setting = w.slice(2);
    if (setting === null) continue;
    const eq = setting.indexOf('=');
    if (eq > 0 && setting.slice(0, eq).toLowerCase() === name) found = setting.slice(eq + 1);
  }
  return found;
}
