/**
 * Builders for the backend messages the gateway and the local listener emit, and decoders for
 * the few messages policy and audit read (protocol v3, "Message Formats").
 *
 * Decoders take a message body (the bytes after type and length) and throw ProtocolError on
 * anything malformed: every byte may come from a hostile peer.
 */
import { ProtocolError } from '../../errors.js';

// Message type bytes, named as in the protocol documentation.
export const MessageType = {
  // frontend
  Bind: 0x42, // B
  Close: 0x43, // C
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  Describe: 0x44, // D
  Execute: 0x45, // E
  Flush: 0x48, // H
  FunctionCall: 0x46, // F
  Parse: 0x50, // P
  PasswordMessage: 0x70, // p (also SASLInitialResponse, SASLResponse)
  Query: 0x51, // Q
  Sync: 0x53, // S
  Terminate: 0x58, // X
  // backend
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  CommandComplete: 0x43, // C
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  CopyBothResponse: 0x57, // W
  DataRow: 0x44, // D
  EmptyQueryResponse: 0x49, // I
  ErrorResponse: 0x45, // E
  FunctionCallResponse: 0x56, // V
  NegotiateProtocolVersion: 0x76, // v
  NoData: 0x6e, // n
  NoticeResponse: 0x4e, // N
  NotificationResponse: 0x41, // A
  ParameterDescription: 0x74, // t
  ParameterStatus: 0x53, // S
  ParseComplete: 0x31, // 1
  PortalSuspended: 0x73, // s
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
} as const;

/** Authentication request codes carried by an 'R' message. */
export const AuthCode = {
  Ok: 0,
  CleartextPassword: 3,
  MD5Password: 5,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

// ---------------------------------------------------------------------------------------------
// Writing

/** Builds one typed message; `body` parts are concatenated. */
export function frame(type: number, ...body: Buffer[]): Buffer {
  const len = body.reduce((n, b) => n + b.length, 4);
  const out = Buffer.allocUnsafe(1 + len);
  out[0] = type;
  out.writeInt32BE(len, 1);
  let at = 5;
  for (const b of body) at += b.copy(out, at);
  return out;
}

export function cstring(s: string): Buffer {
  // A NUL inside would end the field early on the peer: cut it rather than desynchronise.
  return Buffer.from(s.replace(/\0/g, '') + '\0', 'utf8');
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n);
  return b;
}

export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';

export interface NoticeFields {
  severity: Severity;
  code: string; // SQLSTATE
  message: string;
  detail?: string;
  hint?: string;
}

function fields(f: NoticeFields): Buffer {
  const parts: Buffer[] = [];
  const add = (tag: string, v: string | undefined) => {
    if (v !== undefined) parts.push(Buffer.from(tag, 'latin1'), cstring(v));
  };
  add('S', f.severity);
  add('V', f.severity); // non-localized severity (9.6+), read by libpq
  add('C', f.code);
  add('M', f.message);
  add('D', f.detail);
  add('H', f.hint);
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export function errorResponse(f: NoticeFields): Buffer {
  return frame(MessageType.ErrorResponse, fields(f));
}

export function noticeResponse(f: Omit<NoticeFields, 'severity'> & { severity?: Severity }): Buffer {
  return frame(MessageType.NoticeResponse, fields({ severity: 'NOTICE', ...f }));
}

export function authenticationOk(): Buffer {
  return frame(MessageType.Authentication, int32(AuthCode.Ok));
}

/** AuthenticationCleartextPassword: the client answers with a PasswordMessage holding the password. */
export function authenticationCleartextPassword(): Buffer {
  return frame(MessageType.Authentication, int32(AuthCode.CleartextPassword));
}

/** AuthenticationSASL listing mechanisms (each NUL-terminated, then an empty name). */
export function authenticationSASL(mechanisms: string[]): Buffer {
  return frame(MessageType.Authentication, int32(AuthCode.SASL), ...mechanisms.map(cstring), Buffer.from([0]));
}

export function authenticationSASLContinue(data: string): Buffer {
  return frame(MessageType.Authentication, int32(AuthCode.SASLContinue), Buffer.from(data, 'utf8'));
}

export function authenticationSASLFinal(data: string): Buffer {
  return frame(MessageType.Authentication, int32(AuthCode.SASLFinal), Buffer.from(data, 'utf8'));
}

export function parameterStatus(name: string, value: string): Buffer {
  return frame(MessageType.ParameterStatus, cstring(name), cstring(value));
}

export function backendKeyData(processId: number, secretKey: number): Buffer {
  return frame(MessageType.BackendKeyData, int32(processId), int32(secretKey));
}

export type TransactionStatus = 'I' | 'T' | 'E';

export function readyForQuery(status: TransactionStatus): Buffer {
  return frame(MessageType.ReadyForQuery, Buffer.from(status, 'latin1'));
}

/** SSLRequest, GSSENCRequest and CancelRequest share one layout: length, code, [pid, key]. */
export function cancelRequest(processId: number, secretKey: number): Buffer {
  const b = Buffer.allocUnsafe(16);
  b.writeInt32BE(16);
  b.writeInt32BE(80877102, 4);
  b.writeInt32BE(processId, 8);
  b.writeInt32BE(secretKey, 12);
  return b;
}

export function sslRequest(): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeInt32BE(8);
  b.writeInt32BE(80877103, 4);
  return b;
}

/** StartupMessage for protocol 3.0 with the given parameters. */
export function startupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [int32(196608)];
  for (const [k, v] of Object.entries(params)) parts.push(cstring(k), cstring(v));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  return Buffer.concat([int32(body.length + 4), body]);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** A bounds-checked cursor over one message body. */
export class BodyReader {
  private at = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  get remaining(): number {
    return this.buf.length - this.at;
  }

  private need(n: number): void {
    if (n < 0 || this.at + n > this.buf.length) throw new ProtocolError(`malformed ${this.what} message: truncated`);
  }

  byte(): number {
    this.need(1);
    return this.buf[this.at++]!;
  }

  int16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.at);
    this.at += 2;
    return v;
  }

  int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.at);
    this.at += 4;
    return v;
  }

  uint32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }

  cstring(): string {
    const end = this.buf.indexOf(0, this.at);
    if (end < 0) throw new ProtocolError(`malformed ${this.what} message: unterminated string`);
    const v = this.buf.toString('utf8', this.at, end);
    this.at = end + 1;
    return v;
  }

  /** Int16 count, then that many items; a negative count is malformed. */
  count16(): number {
    const n = this.int16();
    if (n < 0) throw new ProtocolError(`malformed ${this.what} message: negative count`);
    return n;
  }
}

export function decodeQuery(body: Buffer): { sql: string } {
  return { sql: new BodyReader(body, 'Query').cstring() };
}

export interface ParseMessage { name: string; sql: string; paramTypes: number[] }

export function decodeParse(body: Buffer): ParseMessage {
  const r = new BodyReader(body, 'Parse');
  const name = r.cstring();
  const sql = r.cstring();
  const n = r.count16();
  const paramTypes: number[] = [];
  for (let i = 0; i < n; i++) paramTypes.push(r.uint32());
  return { name, sql, paramTypes };
}

export interface BindMessage {
  portal: string;
  statement: string;
  /** Per-parameter format codes after expanding the 0/1/n rule: 0 text, 1 binary. */
  paramFormats: number[];
  values: (Buffer | null)[];
  resultFormats: number[];
}

export function decodeBind(body: Buffer): BindMessage {
  const r = new BodyReader(body, 'Bind');
  const portal = r.cstring();
  const statement = r.cstring();
  const nf = r.count16();
  const formats: number[] = [];
  for (let i = 0; i < nf; i++) formats.push(r.int16());
  const nv = r.count16();
  const values: (Buffer | null)[] = [];
  for (let i = 0; i < nv; i++) {
    const len = r.int32();
    values.push(len === -1 ? null : r.bytes(len));
  }
  const nr = r.count16();
  const resultFormats: number[] = [];
  for (let i = 0; i < nr; i++) resultFormats.push(r.int16());
  // Zero format codes: all text; one: applies to all; else one per parameter.
  const paramFormats = values.map((_, i) => (nf === 0 ? 0 : nf === 1 ? formats[0]! : (formats[i] ?? 0)));
  return { portal, statement, paramFormats, values, resultFormats };
}

/** FunctionCall (fastpath): the function's OID, its arguments with the Bind format rules, and the result format. */
export function decodeFunctionCall(body: Buffer): { oid: number; formats: number[]; values: (Buffer | null)[]; resultFormat: number } {
  const r = new BodyReader(body, 'FunctionCall');
  const oid = r.uint32();
  const nf = r.count16();
  const codes: number[] = [];
  for (let i = 0; i < nf; i++) codes.push(r.int16());
  const nv = r.count16();
  const values: (Buffer | null)[] = [];
  for (let i = 0; i < nv; i++) {
    const len = r.int32();
    values.push(len === -1 ? null : r.bytes(len));
  }
  const resultFormat = r.int16();
  const formats = values.map((_, i) => (nf === 0 ? 0 : nf === 1 ? codes[0]! : (codes[i] ?? 0)));
  return { oid, formats, values, resultFormat };
}

export function decodeExecute(body: Buffer): { portal: string; maxRows: number } {
  const r = new BodyReader(body, 'Execute');
  return { portal: r.cstring(), maxRows: r.int32() };
}

/** Describe and Close: 'S' statement or 'P' portal, then its name. */
export function decodeTarget(body: Buffer, what: 'Describe' | 'Close'): { kind: 'S' | 'P'; name: string } {
  const r = new BodyReader(body, what);
  const k = r.byte();
  if (k !== 0x53 && k !== 0x50) throw new ProtocolError(`malformed ${what} message: unknown target ${k}`);
  return { kind: k === 0x53 ? 'S' : 'P', name: r.cstring() };
}

export interface FieldDescription { name: string; tableOid: number; column: number; typeOid: number; format: number }

export function decodeRowDescription(body: Buffer): FieldDescription[] {
  const r = new BodyReader(body, 'RowDescription');
  const n = r.count16();
  const out: FieldDescription[] = [];
  for (let i = 0; i < n; i++) {
    const name = r.cstring();
    const tableOid = r.uint32();
    const column = r.int16();
    const typeOid = r.uint32();
    r.int16(); // typlen
    r.int32(); // typmod
    const format = r.int16();
    out.push({ name, tableOid, column, typeOid, format });
  }
  return out;
}

/** DataRow column values as slices of `body` (null for SQL NULL). */
export function decodeDataRow(body: Buffer): (Buffer | null)[] {
  const r = new BodyReader(body, 'DataRow');
  const n = r.count16();
  const out: (Buffer | null)[] = [];
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    out.push(len === -1 ? null : r.bytes(len));
  }
  return out;
}

export function decodeCommandComplete(body: Buffer): { tag: string } {
  return { tag: new BodyReader(body, 'CommandComplete').cstring() };
}

/** ErrorResponse / NoticeResponse fields by their one-letter tag (S, V, C, M, D, H, ...). */
export function decodeNoticeFields(body: Buffer): Record<string, string> {
  const r = new BodyReader(body, 'ErrorResponse');
  const out: Record<string, string> = {};
  for (;;) {
    const tag = r.byte();
    if (tag === 0) return out;
    out[String.fromCharCode(tag)] = r.cstring();
  }
}

export function decodeParameterDescription(body: Buffer): number[] {
  const r = new BodyReader(body, 'ParameterDescription');
  const n = r.count16();
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(r.uint32());
  return out;
}

export function decodeParameterStatus(body: Buffer): { name: string; value: string } {
  const r = new BodyReader(body, 'ParameterStatus');
  return { name: r.cstring(), value: r.cstring() };
}

export function decodeBackendKeyData(body: Buffer): { processId: number; secretKey: number } {
  const r = new BodyReader(body, 'BackendKeyData');
  return { processId: r.int32(), secretKey: r.int32() };
}

export function decodeReadyForQuery(body: Buffer): TransactionStatus {
  const s = String.fromCharCode(new BodyReader(body, 'ReadyForQuery').byte());
  if (s !== 'I' && s !== 'T' && s !== 'E') throw new ProtocolError(`malformed ReadyForQuery: status ${s}`);
  return s;
}

export interface StartupPacket { protocol: number; parameters: Record<string, string> }

/** The body of a StartupMessage (after its length): version, then name/value pairs, then NUL. */
export function decodeStartupMessage(body: Buffer): StartupPacket {
  const r = new BodyReader(body, 'StartupMessage');
  const protocol = r.int32();
  const parameters: Record<string, string> = Object.create(null) as Record<string, string>;
  for (;;) {
    const name = r.cstring();
    if (name === '') break;
    parameters[name] = r.cstring();
  }
  return { protocol, parameters };
}

export function decodeCancelRequest(body: Buffer): { processId: number; secretKey: number } {
  const r = new BodyReader(body, 'CancelRequest');
  r.int32(); // code
  return { processId: r.int32(), secretKey: r.int32() };
}
