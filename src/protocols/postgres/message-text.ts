/**
 * The texts the client receives outside result columns, changed before they leave: the fields
 * of NoticeResponse and ErrorResponse, NotificationResponse's channel and payload, and
 * ParameterStatus values. Two passes, in this order:
 *
 * - `redactValues` (a plan's redactMessageValues, for notices and errors only): the values
 *   PostgreSQL quotes into a message (`invalid input syntax for type integer: "123-45-6789"`,
 *   `Key (ssn)=(123-45-6789) already exists`, `Failing row contains (...)`) become `***`;
 * - the session's `scrubText` (content detectors).
 *
 * A message is rebuilt only when a text changed; otherwise the caller forwards the original
 * bytes. Text is read as UTF-8 in a UTF8 session, else as a latin1 view of the bytes (every
 * replacement is ASCII, and ASCII bytes are ASCII characters in the encodings hoop accepts); a
 * rewritten text that the session's encoding would not accept keeps only its ASCII bytes.
 */
import { isUtf8 } from 'node:buffer';
import type { ClientDecoder } from './encodings.js';
import { ProtocolError } from '../../errors.js';
import { MessageType, frame } from './messages.js';

export interface MessageRewrite {
  /** Replace quoted values in notice and error texts (RunPlan.redactMessageValues). */
  redactValues: boolean;
  scrubText?: (text: string, tally: (label: string) => void) => string;
  /** Where the changes are counted: the run the message belongs to, or the unattributed record's. */
  tally: (label: string, n?: number) => void;
  /** The session's client encoding (null: read as ASCII only). */
  decoder: ClientDecoder | null;
}

/** Fields of a NoticeResponse/ErrorResponse that are not text: severity, code, positions. */
const CODE_FIELDS = new Set([0x53 /* S */, 0x56 /* V */, 0x43 /* C */, 0x50 /* P */, 0x70 /* p */]);
/** Context (W) and internal query (q): statement texts and data excerpts ("JSON data, line 1: ..."), dropped whole. */
const WHOLE_FIELDS = new Set([0x57 /* W */, 0x71 /* q */]);
export const MESSAGE_VALUES_LABEL = 'message values';

/** Whether there is anything to do at all (the common case: no scrubber, no redaction). */
export function rewrites(r: MessageRewrite): boolean {
  return r.redactValues || r.scrubText !== undefined;
}

/** A NoticeResponse or ErrorResponse (type) with its body rewritten, or null if nothing changed. */
export function rewriteNotice(type: number, body: Buffer, r: MessageRewrite): Buffer | null {
  const parts: Buffer[] = [];
  let changed = false;
  let at = 0;
  for (;;) {
    if (at >= body.length) return null; // malformed: the relay's decoder reports it
    const tag = body[at]!;
    if (tag === 0) break;
    const end = body.indexOf(0, at + 1);
    if (end < 0) return null;
    const value = body.subarray(at + 1, end);
    const out = CODE_FIELDS.has(tag) ? null : rewriteField(value, r, (text) => (r.redactValues ? redactField(tag, text, r.tally) : text));
    parts.push(body.subarray(at, at + 1), out ?? value, ZERO);
    if (out) changed = true;
    at = end + 1;
  }
  return changed ? frame(type, ...parts, ZERO) : null;
}

/** A NotificationResponse (pid, channel, payload) rewritten, or null if nothing changed. */
export function rewriteNotification(body: Buffer, r: MessageRewrite): Buffer | null {
  if (body.length < 4) throw new ProtocolError('malformed NotificationResponse message: truncated');
  const pid = body.subarray(0, 4);
  const [channel, afterChannel] = cstringAt(body, 4);
  const [payload] = cstringAt(body, afterChannel);
  const c = rewriteField(channel, r);
  const p = rewriteField(payload, r);
  if (!c && !p) return null;
  return frame(MessageType.NotificationResponse, pid, c ?? channel, ZERO, p ?? payload, ZERO);
}

/** A ParameterStatus (name, value) with its value rewritten, or null if nothing changed. */
export function rewriteParameterStatus(body: Buffer, r: MessageRewrite): Buffer | null {
  const [name, afterName] = cstringAt(body, 0);
  const [value] = cstringAt(body, afterName);
  const v = rewriteField(value, r);
  return v ? frame(MessageType.ParameterStatus, name, ZERO, v, ZERO) : null;
}

const ZERO = Buffer.from([0]);

function cstringAt(body: Buffer, at: number): [Buffer, number] {
  const end = body.indexOf(0, at);
  if (end < 0) throw new ProtocolError('malformed message: unterminated string');
  return [body.subarray(at, end), end + 1];
}

/** One field's bytes through `first` and the scrubber; null when the text did not change. */
function rewriteField(bytes: Buffer, r: MessageRewrite, first: (text: string) => string = (t) => t): Buffer | null {
  if (bytes.length === 0) return null;
  const utf8 = r.decoder?.name === 'UTF8' && isUtf8(bytes);
  const text = bytes.toString(utf8 ? 'utf8' : 'latin1');
  let out = first(text);
  if (r.scrubText) out = r.scrubText(out, (label) => r.tally(label));
  if (out === text) return null;
  const b = Buffer.from(out.replace(/\0/g, ''), utf8 ? 'utf8' : 'latin1');
  if (utf8 || (r.decoder && r.decoder.decode(b) !== null)) return b;
  return asciiOnly(b);
}

/** Non-ASCII bytes as '?': valid in every client encoding hoop accepts. */
function asciiOnly(b: Buffer): Buffer {
  for (let i = 0; i < b.length; i++) if (b[i]! >= 0x80) b[i] = 0x3f;
  return b;
}

function redactField(tag: number, text: string, tally: (label: string, n?: number) => void): string {
  if (WHOLE_FIELDS.has(tag)) {
    if (text === '***') return text;
    tally(MESSAGE_VALUES_LABEL);
    return '***';
  }
  const { text: out, count } = redactValues(text);
  if (count > 0) tally(MESSAGE_VALUES_LABEL, count);
  return out;
}

/**
 * The values PostgreSQL puts into a message text, replaced: a key detail `Key (a, b)=(v1, v2)`
 * -> `Key (a, b)=(***)`, `Failing row contains (...)` -> `(***)`, and double-quoted text
 * `"..."` -> `"***"`. PostgreSQL does not escape quotes inside a quoted value, so no quote can be
 * trusted to end one: everything from the first opening to the last closing mark is replaced,
 * and an opening mark with no closing one is replaced to the end of the text. Byte sequences
 * quoted as hex (`invalid byte sequence for encoding "UTF8": 0x80 0x41`) become `0x**`.
 */
export function redactValues(text: string): { text: string; count: number } {
  let count = 0;
  const span = (s: string, open: number, closeChar: string): string => {
    const close = s.lastIndexOf(closeChar);
    const tail = close >= open ? s.slice(close) : '';
    const inner = close >= open ? s.slice(open, close) : s.slice(open);
    if (inner === '***') return s;
    count++;
    return s.slice(0, open) + '***' + tail;
  };
  let out = text;
  const key = out.indexOf(')=(');
  if (key >= 0) out = span(out, key + 3, ')');
  const failing = out.indexOf('Failing row contains (');
  if (failing >= 0) out = span(out, failing + 'Failing row contains ('.length, ')');
  const quote = out.indexOf('"');
  if (quote >= 0) out = span(out, quote + 1, '"');
  out = out.replace(/0x[0-9a-fA-F]{2}(?: 0x[0-9a-fA-F]{2})*/g, (m) => {
    if (m === '0x**') return m;
    count++;
    return '0x**';
  });
  return { text: out, count };
}
