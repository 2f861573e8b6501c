/**
 * A raw PostgreSQL protocol client: it sends exactly the frontend bytes a test builds (pipelined
 * in one write, out of order, hostile) and keeps every backend message it receives, decoded.
 *
 *   rawTunnel(gw.url, key, {application})   through the REAL tunnel: a WebSocket to
 *                                            /api/v1/connections/<name>/tunnel with the Bearer key
 *   rawDirect(host, port, {application})     straight to PostgreSQL over TCP (trust), to show what
 *                                            the same bytes do without hoop
 *
 * Both send a StartupMessage and read until ReadyForQuery. Then:
 *
 *   const r = await c.exchange(Buffer.concat([fe.parse(...), fe.bind(...), fe.execute(), fe.sync()]), 1);
 *   r.messages   // every backend message after the send, until 1 ReadyForQuery (or the close)
 *   r.closed     // whether the connection ended before that
 *
 * Text in DataRow, ErrorResponse and the rest is decoded in the session's client encoding
 * (`encoding` option: utf8, latin1, windows-1252, shift_jis, ...).
 */
import { connect as netConnect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { FrameReader } from '../../src/protocols/postgres/framing.js';
import { MessageType, frame, startupMessage } from '../../src/protocols/postgres/messages.js';

// ---------------------------------------------------------------------------------------------
// frontend messages

function int16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(n);
  return b;
}
function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n);
  return b;
}
/** A NUL-terminated string: text as UTF-8, or raw bytes as given (for other client encodings). */
function cstr(s: string | Buffer): Buffer {
  return Buffer.concat([typeof s === 'string' ? Buffer.from(s, 'utf8') : s, Buffer.from([0])]);
}
function values(vals: (string | Buffer | null)[]): Buffer[] {
  const out: Buffer[] = [int16(vals.length)];
  for (const v of vals) {
    if (v === null) out.push(int32(-1));
    else {
      const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
      out.push(int32(b.length), b);
    }
  }
  return out;
}

/** Frontend message builders. Strings are UTF-8; pass a Buffer for bytes in another encoding. */
export const fe = {
  query: (sql: string | Buffer) => frame(MessageType.Query, cstr(sql)),
  parse: (name: string, sql: string | Buffer, paramTypes: number[] = []) =>
    frame(MessageType.Parse, cstr(name), cstr(sql), int16(paramTypes.length), ...paramTypes.map((t) => {
      const b = Buffer.allocUnsafe(4);
      b.writeUInt32BE(t);
      return b;
    })),
  bind: (portal: string, statement: string, params: (string | Buffer | null)[] = [], opts: { formats?: number[]; resultFormats?: number[] } = {}) =>
    frame(MessageType.Bind, cstr(portal), cstr(statement), int16((opts.formats ?? []).length), ...(opts.formats ?? []).map(int16), ...values(params),
      int16((opts.resultFormats ?? []).length), ...(opts.resultFormats ?? []).map(int16)),
  describe: (kind: 'S' | 'P', name = '') => frame(MessageType.Describe, Buffer.from(kind, 'latin1'), cstr(name)),
  execute: (portal = '', maxRows = 0) => frame(MessageType.Execute, cstr(portal), int32(maxRows)),
  close: (kind: 'S' | 'P', name = '') => frame(MessageType.Close, Buffer.from(kind, 'latin1'), cstr(name)),
  sync: () => frame(MessageType.Sync),
  flush: () => frame(MessageType.Flush),
  copyData: (data: string | Buffer) => frame(MessageType.CopyData, typeof data === 'string' ? Buffer.from(data, 'utf8') : data),
  copyDone: () => frame(MessageType.CopyDone),
  copyFail: (message: string) => frame(MessageType.CopyFail, cstr(message)),
  /** Fastpath FunctionCall; args in text format unless `formats` says otherwise; result text (0) by default. */
  functionCall: (oid: number, args: (string | Buffer | null)[], opts: { formats?: number[]; resultFormat?: number } = {}) => {
    const o = Buffer.allocUnsafe(4);
    o.writeUInt32BE(oid);
    return frame(MessageType.FunctionCall, o, int16((opts.formats ?? []).length), ...(opts.formats ?? []).map(int16), ...values(args), int16(opts.resultFormat ?? 0));
  },
  terminate: () => frame(MessageType.Terminate),
  /** Parse + Bind + Execute of the unnamed statement, as one extended-protocol run (no Sync). */
  run: (sql: string | Buffer, params: (string | Buffer | null)[] = [], paramTypes: number[] = []) =>
    Buffer.concat([frame(MessageType.Parse, cstr(''), cstr(sql), int16(paramTypes.length), ...paramTypes.map((t) => {
      const b = Buffer.allocUnsafe(4);
      b.writeUInt32BE(t);
      return b;
    })), fe.bind('', '', params), fe.execute('', 0)]),
};

// ---------------------------------------------------------------------------------------------
// backend messages

const BACKEND_NAMES: Record<string, string> = {
  R: 'Authentication', K: 'BackendKeyData', '2': 'BindComplete', '3': 'CloseComplete', C: 'CommandComplete',
  G: 'CopyInResponse', H: 'CopyOutResponse', W: 'CopyBothResponse', d: 'CopyData', c: 'CopyDone', D: 'DataRow',
  I: 'EmptyQueryResponse', E: 'ErrorResponse', V: 'FunctionCallResponse', v: 'NegotiateProtocolVersion', n: 'NoData',
  N: 'NoticeResponse', A: 'NotificationResponse', t: 'ParameterDescription', S: 'ParameterStatus', '1': 'ParseComplete',
  s: 'PortalSuspended', Z: 'ReadyForQuery', T: 'RowDescription',
};

export interface BackendMessage {
  /** The type byte as a character ('D', 'E', 'Z', ...). */
  type: string;
  name: string;
  /** The whole message as received (type, length, body). */
  raw: Buffer;
  body: Buffer;
  /** ErrorResponse / NoticeResponse: fields by tag (S, V, C, M, D, H, W, ...). */
  fields?: Record<string, string>;
  /** DataRow: raw values, and as text in the client encoding. */
  values?: (Buffer | null)[];
  text?: (string | null)[];
  /** RowDescription: column names. */
  columns?: string[];
  /** CommandComplete: the tag. */
  tag?: string;
  /** ReadyForQuery: I, T or E. */
  status?: string;
  /** NotificationResponse. */
  notification?: { pid: number; channel: string; payload: string };
  /** FunctionCallResponse: the result value (null for NULL). */
  result?: Buffer | null;
  /** ParameterStatus. */
  parameter?: { name: string; value: string };
  /** CopyData. */
  data?: Buffer;
}

/** Windows-1252 at 0x80-0x9F (Microsoft's table; the five unassigned bytes as U+FFFD). */
const WIN1252_80_9F = [...'€\ufffd‚ƒ„…†‡ˆ‰Š‹Œ\ufffdŽ\ufffd\ufffd‘’“”•–—˜™š›œ\ufffdžŸ'];

/** Decodes text in a PostgreSQL client encoding's terms (latin1 is ISO 8859-1, not WHATWG's). */
export function decodeText(buf: Buffer, encoding: string): string {
  const e = encoding.toLowerCase().replace(/[^a-z0-9]/g, '');
  if (e === 'utf8') return buf.toString('utf8');
  if (e === 'latin1' || e === 'iso88591') return buf.toString('latin1');
  // (Node 20's TextDecoder('windows-1252') reads 0x80-0x9F as C1 controls: spell the code page out.)
  if (e === 'win1252' || e === 'windows1252') return [...buf].map((b) => (b >= 0x80 && b <= 0x9f ? WIN1252_80_9F[b - 0x80]! : String.fromCharCode(b))).join('');
  if (e === 'sjis' || e === 'shiftjis') return new TextDecoder('shift_jis').decode(buf);
  return new TextDecoder(encoding).decode(buf);
}

class Cursor {
  at = 0;
  constructor(private readonly b: Buffer, private readonly enc: string) {}
  int16(): number { const v = this.b.readInt16BE(this.at); this.at += 2; return v; }
  int32(): number { const v = this.b.readInt32BE(this.at); this.at += 4; return v; }
  byte(): number { return this.b[this.at++]!; }
  bytes(n: number): Buffer { const v = this.b.subarray(this.at, this.at + n); this.at += n; return v; }
  cstring(): string {
    const end = this.b.indexOf(0, this.at);
    const v = decodeText(this.b.subarray(this.at, end), this.enc);
    this.at = end + 1;
    return v;
  }
}

export function decodeBackend(raw: Buffer, encoding: string): BackendMessage {
  const type = String.fromCharCode(raw[0]!);
  const body = raw.subarray(5);
  const m: BackendMessage = { type, name: BACKEND_NAMES[type] ?? `0x${raw[0]!.toString(16)}`, raw, body };
  const r = new Cursor(body, encoding);
  switch (type) {
    case 'E':
    case 'N': {
      const f: Record<string, string> = {};
      for (let t = r.byte(); t !== 0 && t !== undefined; t = r.byte()) f[String.fromCharCode(t)] = r.cstring();
      m.fields = f;
      break;
    }
    case 'D': {
      const n = r.int16();
      m.values = [];
      for (let i = 0; i < n; i++) {
        const len = r.int32();
        m.values.push(len === -1 ? null : r.bytes(len));
      }
      m.text = m.values.map((v) => (v === null ? null : decodeText(v, encoding)));
      break;
    }
    case 'T': {
      const n = r.int16();
      m.columns = [];
      for (let i = 0; i < n; i++) {
        m.columns.push(r.cstring());
        r.bytes(18);
      }
      break;
    }
    case 'C':
      m.tag = r.cstring();
      break;
    case 'Z':
      m.status = String.fromCharCode(body[0]!);
      break;
    case 'A':
      m.notification = { pid: r.int32(), channel: r.cstring(), payload: r.cstring() };
      break;
    case 'V': {
      const len = r.int32();
      m.result = len === -1 ? null : r.bytes(len);
      break;
    }
    case 'S':
      m.parameter = { name: r.cstring(), value: r.cstring() };
      break;
    case 'd':
      m.data = body;
      break;
    default:
      break;
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// the client

interface Transport {
  write(b: Buffer, done?: (err?: Error | null) => void): void;
  close(): void;
}

export interface Exchange {
  messages: BackendMessage[];
  /** The connection ended before the ReadyForQuery count was reached. */
  closed: boolean;
}

export interface RawClientOptions {
  application: string;
  user?: string;
  database?: string;
  /** client_encoding in the StartupMessage (and for decoding text); default UTF8. */
  encoding?: string;
  /** Other startup parameters. */
  parameters?: Record<string, string>;
  /** Longest wait for an exchange; default 20 s. */
  timeoutMs?: number;
}

/** Largest single write on the transport (the tunnel takes WebSocket messages up to 16 MiB). */
const MAX_WRITE = 4 * 1024 * 1024;

export class RawClient {
  /** Every backend message after startup, in order. */
  readonly messages: BackendMessage[] = [];
  /** Startup: ParameterStatus values, the key, and the messages themselves. */
  readonly startup: BackendMessage[] = [];
  readonly parameters: Record<string, string> = {};
  isClosed = false;
  readonly closed: Promise<void>;
  encoding: string;
  /** X-Hoop-Session of the tunnel (null for a direct connection). */
  sessionId: string | null = null;
  private started = false;
  private readonly reader = new FrameReader({ maxFrameBytes: 1024 * 1024 * 1024 + 1024, peer: 'server' });
  private waiters: (() => void)[] = [];
  private markClosed!: () => void;
  private transport!: Transport;
  readonly timeoutMs: number;

  constructor(readonly options: RawClientOptions) {
    this.encoding = options.encoding ?? 'UTF8';
    this.timeoutMs = options.timeoutMs ?? 20_000;
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }

  /** @internal */
  attach(t: Transport): void {
    this.transport = t;
  }

  /** @internal bytes from the server */
  onData(chunk: Buffer): void {
    let batch;
    try {
      batch = this.reader.push(chunk);
    } catch {
      this.onClose();
      return;
    }
    for (const f of batch.frames) {
      // Copy: the reader may reuse what it handed out only for its own buffer, but be safe.
      const m = decodeBackend(Buffer.from(batch.buffer.subarray(f.start, f.end)), this.encoding);
      if (m.parameter) {
        this.parameters[m.parameter.name] = m.parameter.value;
        if (m.parameter.name === 'client_encoding') this.encoding = m.parameter.value;
      }
      if (this.started) this.messages.push(m);
      else {
        this.startup.push(m);
        if (m.type === 'Z') this.started = true;
      }
    }
    this.wake();
  }

  /** @internal */
  onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.markClosed();
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Sends bytes as they are (split only into transport-sized writes, back to back). */
  send(...parts: Buffer[]): void {
    const b = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    for (let at = 0; at < b.length; at += MAX_WRITE) this.transport.write(b.subarray(at, Math.min(b.length, at + MAX_WRITE)));
  }

  /**
   * Sends bytes in 1 MiB writes, each after the previous one was handed to the socket, so that a
   * big message does not hold this process's event loop (which the in-process gateway shares).
   */
  async sendPaced(bytes: Buffer, chunk = 1024 * 1024): Promise<void> {
    for (let at = 0; at < bytes.length; at += chunk) {
      const piece = bytes.subarray(at, Math.min(bytes.length, at + chunk));
      await new Promise<void>((resolve, reject) => this.transport.write(piece, (err) => (err ? reject(err) : resolve())));
    }
  }

  /** Waits until `done(messagesSince)` holds or the connection ends; rejects after the timeout. */
  async waitFor(from: number, done: (ms: BackendMessage[]) => boolean, what: string, timeoutMs = this.timeoutMs): Promise<Exchange> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ms = this.messages.slice(from);
      if (done(ms)) return { messages: ms, closed: false };
      if (this.isClosed) return { messages: ms, closed: true };
      if (Date.now() >= deadline) {
        throw new Error(`raw client ${this.options.application}: no ${what} after ${timeoutMs} ms; received: ${ms.map(describe).join(', ') || 'nothing'}`);
      }
      await this.nextMessage(deadline);
    }
  }

  /** Resolves when a message arrives or the connection closes, or at `deadline` (never later). */
  private nextMessage(deadline: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** Whether `p` settles before `deadline`. */
  private async settles(p: Promise<unknown>, deadline: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()))));
    try {
      return await Promise.race([p.then(() => true as const), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `bytes` in one write and collects what comes back until `ready` ReadyForQuery (or the close). */
  async exchange(bytes: Buffer | Buffer[], ready = 1, timeoutMs = this.timeoutMs): Promise<Exchange> {
    const from = this.messages.length;
    this.send(...(Array.isArray(bytes) ? bytes : [bytes]));
    return this.waitFor(from, (ms) => ms.filter((m) => m.type === 'Z').length >= ready, `${ready} ReadyForQuery`, timeoutMs);
  }

  /** A simple Query; resolves at its ReadyForQuery. */
  query(sql: string | Buffer): Promise<Exchange> {
    return this.exchange(fe.query(sql), 1);
  }

  /** Terminate, then wait for the close. */
  async end(): Promise<void> {
    if (!this.isClosed) {
      try {
        this.send(fe.terminate());
      } catch {
        // already gone
      }
      const closed = await this.settles(this.closed, Date.now() + this.timeoutMs);
      if (!closed) {
        this.transport.close();
        throw new Error(`raw client ${this.options.application}: the server did not close the connection within ${this.timeoutMs} ms of Terminate`);
      }
    }
  }

  destroy(): void {
    this.transport.close();
  }

  /** @internal */
  async begin(): Promise<void> {
    const params: Record<string, string> = {
      user: this.options.user ?? 'tester',
      database: this.options.database ?? 'bank',
      application_name: this.options.application,
      ...(this.options.encoding ? { client_encoding: this.options.encoding } : {}),
      ...this.options.parameters,
    };
    this.send(startupMessage(params));
    const deadline = Date.now() + this.timeoutMs;
    while (!this.started) {
      const fatal = this.startup.find((m) => m.type === 'E');
      if (fatal || this.isClosed) throw new Error(`raw client ${this.options.application}: startup failed: ${fatal ? fatal.fields?.M : 'closed'}`);
      if (Date.now() > deadline) throw new Error(`raw client ${this.options.application}: no ReadyForQuery at startup`);
      await this.nextMessage(deadline);
    }
  }
}

export function describe(m: BackendMessage): string {
  if (m.type === 'E' || m.type === 'N') return `${m.name}(${m.fields?.V ?? m.fields?.S} ${m.fields?.C} ${m.fields?.M})`;
  if (m.type === 'D') return `DataRow(${JSON.stringify(m.text).slice(0, 80)})`;
  if (m.type === 'C') return `CommandComplete(${m.tag})`;
  if (m.type === 'Z') return `ReadyForQuery(${m.status})`;
  if (m.type === 'S') return `ParameterStatus(${m.parameter?.name}=${m.parameter?.value})`;
  return m.name;
}

/** A raw client through the gateway's tunnel endpoint. */
export async function rawTunnel(gatewayUrl: string, key: string, options: RawClientOptions & { connection?: string; ca?: string }): Promise<RawClient> {
  const c = new RawClient(options);
  const url = `${gatewayUrl.replace(/^http/, 'ws')}/api/v1/connections/${options.connection ?? 'bank'}/tunnel`;
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${key}` }, ...(options.ca ? { ca: options.ca } : {}) });
  await new Promise<void>((resolve, reject) => {
    ws.on('upgrade', (res) => {
      const id = res.headers['x-hoop-session'];
      c.sessionId = typeof id === 'string' ? id : null;
    });
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => reject(new Error(`tunnel refused (${res.statusCode}): ${text}`)));
    });
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.on('message', (data: Buffer | Buffer[] | ArrayBuffer) => {
    const b = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    c.onData(b);
  });
  ws.on('close', () => c.onClose());
  ws.on('error', () => c.onClose());
  c.attach({
    write: (b, done) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(b, { binary: true }, done);
      else done?.(new Error('the tunnel is closed'));
    },
    close: () => ws.terminate(),
  });
  await c.begin();
  return c;
}

/** A raw client straight to PostgreSQL (no hoop), e.g. to prove an attack works there. */
export async function rawDirect(host: string, port: number, options: RawClientOptions): Promise<RawClient> {
  const c = new RawClient(options);
  const socket: Socket = netConnect({ host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.setNoDelay(true);
  socket.on('data', (d: Buffer) => c.onData(d));
  socket.on('close', () => c.onClose());
  socket.on('error', () => c.onClose());
  c.attach({ write: (b, done) => void socket.write(b, done), close: () => socket.destroy() });
  await c.begin();
  return c;
}

// ---------------------------------------------------------------------------------------------
// reading what came back

export const errorsIn = (ms: BackendMessage[]) => ms.filter((m) => m.type === 'E').map((m) => m.fields!);
export const noticesIn = (ms: BackendMessage[]) => ms.filter((m) => m.type === 'N').map((m) => m.fields!);
export const rowsIn = (ms: BackendMessage[]) => ms.filter((m) => m.type === 'D').map((m) => m.text!);
export const tagsIn = (ms: BackendMessage[]) => ms.filter((m) => m.type === 'C').map((m) => m.tag!);
export const notificationsIn = (ms: BackendMessage[]) => ms.filter((m) => m.type === 'A').map((m) => m.notification!);
export const namesIn = (ms: BackendMessage[]) => ms.map(describe);
