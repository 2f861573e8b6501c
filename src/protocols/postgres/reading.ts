/**
 * Reading a client message's text as the server will: in the session's client encoding, the
 * statement text up to the text limit with the length and SHA-256 of all of it, and the decoded
 * parameters of a Bind. `null` means the bytes are not valid in that encoding (or hoop cannot
 * read it faithfully): the forwarder refuses the message.
 */
import { ProtocolError } from '../../errors.js';
import type { StatementStart } from '../engine.js';
import type { Catalog, Portal, PreparedStatement } from './catalog.js';
import { clientDecoder, type ClientDecoder } from './encodings.js';
import { BodyReader, type decodeBind } from './messages.js';
import { decodeParameter } from './params.js';
import type { ResponseQueue } from './responses.js';
import { cstringAt, lowerAscii, recordedText, sha256Of, type RecordedText } from './text.js';

/** Stands for the unread rest of a cut statement: every risk check must assume the worst of it. */
export const UNREAD_REST = 'do call copy stdin encoding';

export class StatementReader {
  constructor(private readonly queue: ResponseQueue, private readonly catalog: Catalog, private readonly limit: number) {}

  private cached: { encoding: string; decoder: ClientDecoder | null } | null = null;

  /** The decoder of the client encoding in force (looked up again only when it changes). */
  decoder(): ClientDecoder | null {
    const encoding = this.queue.clientEncoding;
    if (this.cached?.encoding !== encoding) this.cached = { encoding, decoder: clientDecoder(encoding) };
    return this.cached.decoder;
  }

  async text(bytes: Buffer): Promise<RecordedText | null> {
    const decoder = this.decoder();
    return decoder ? recordedText(bytes, decoder, this.limit) : null;
  }

  /** A Parse's name, text and parameter types; `text` is null when the text is not readable. */
  async parse(body: Buffer): Promise<{ name: string; statement: PreparedStatement | null }> {
    const r = new BodyReader(body, 'Parse');
    const name = r.cstring();
    const at = Buffer.byteLength(name) + 1;
    const bytes = cstringAt(body, at, body.length);
    if (!bytes) throw new ProtocolError('malformed Parse message: unterminated query string');
    const rest = new BodyReader(body.subarray(at + bytes.length + 1), 'Parse');
    const n = rest.count16();
    const paramTypes: number[] = [];
    for (let k = 0; k < n; k++) paramTypes.push(rest.uint32());
    const text = await this.text(bytes);
    if (!text) return { name, statement: null };
    return {
      name,
      statement: {
        sql: text.text, paramTypes, fields: null,
        lower: text.truncated ? UNREAD_REST : lowerAscii(bytes),
        bytes: text.bytes, sha256: text.sha256, ...(text.truncated ? { truncated: true } : {}),
      },
    };
  }

  /** parse() for a small unnamed Parse, without yielding. */
  smallParse(body: Buffer): PreparedStatement | null {
    const bytes = cstringAt(body, 1, body.length);
    if (!bytes) throw new ProtocolError('malformed Parse message: unterminated query string');
    const rest = new BodyReader(body.subarray(bytes.length + 2), 'Parse');
    const n = rest.count16();
    const paramTypes: number[] = [];
    for (let k = 0; k < n; k++) paramTypes.push(rest.uint32());
    const sql = this.decoder()?.decode(bytes);
    if (sql === null || sql === undefined) return null;
    return { sql, paramTypes, fields: null, lower: lowerAscii(bytes), bytes: bytes.length, sha256: sha256Of(bytes) };
  }

  /** A Bind's portal as the record names it, parameters decoded. */
  portal(b: ReturnType<typeof decodeBind>): Portal | null {
    const catalog = this.catalog;
    const statement = catalog.statements.get(b.statement) ?? null;
    const types = statement?.paramTypes ?? [];
    const decoder = this.decoder();
    const parameters: unknown[] = [];
    let kept = 0;
    for (let k = 0; k < b.values.length; k++) {
      const v = b.values[k]!;
      const text = v !== null && b.paramFormats[k] === 0 ? decoder?.decode(v) : undefined;
      if (text === null || (text === undefined && v !== null && b.paramFormats[k] === 0)) return null; // the server would read it otherwise
      // Kept up to the text limit, like statement text; past it, the length and hash of the value.
      kept += v?.length ?? 0;
      if (v && kept > this.limit) parameters.push(omittedValue(v));
      else parameters.push(text ?? decodeParameter(v, b.paramFormats[k]!, types[k] || undefined));
    }
    return {
      statementName: b.statement,
      statementVersion: catalog.statements.version(b.statement),
      parameters,
      resultFormats: b.resultFormats,
      fields: null,
    };
  }
}

/** What the record keeps of a value past the limit. */
export function omittedValue(v: Buffer): { omitted: true; bytes: number; sha256: string } {
  return { omitted: true, bytes: v.length, sha256: sha256Of(v) };
}

export function textFields(t: RecordedText): Pick<StatementStart, 'statement' | 'statementBytes' | 'statementSha256' | 'statementTruncated'> {
  return { statement: t.text, statementBytes: t.bytes, statementSha256: t.sha256, ...(t.truncated ? { statementTruncated: true } : {}) };
}

export function preparedText(s: PreparedStatement): Pick<StatementStart, 'statementBytes' | 'statementSha256' | 'statementTruncated'> {
  return { ...(s.bytes !== undefined ? { statementBytes: s.bytes } : {}), ...(s.sha256 ? { statementSha256: s.sha256 } : {}), ...(s.truncated ? { statementTruncated: true } : {}) };
}
