/**
 * The `hash` mask: a keyed token of the value's shape, from the value's keyed stream
 * (token-mac.ts). Draw k is bytes 2k and 2k+1 of the stream, big-endian.
 *
 * - text-like values: every ASCII digit becomes a digit (draw % 10), every lower-case letter a
 *   lower-case letter, every capital a capital (draw % 26); other bytes stay. The same length,
 *   so the token fits char(n)/varchar(n) and a dump of it restores. bpchar padding is left out
 *   of the MAC and kept as spaces.
 * - integers (int2/int4/int8): "1" and then 4, 9 or 18 drawn digits: a value of the type's full
 *   decimal width (10000-19999, 10^9-2*10^9-1, 10^18-2*10^18-1), so its text is as long as its
 *   placeholder and the binary form fits the type. MACed as its canonical decimal text, so text
 *   and binary formats agree.
 *
 * A mask writes a placeholder of the final length into the sink (separators kept, letters and
 * digits '*'; "1000…" for an integer) and queues the value in the sink's batch; `settle` then
 * computes every queued stream in a few native calls and overwrites the placeholders. A
 * placeholder that is never settled shows nothing of the value.
 */
import type { SinkBatch, ValueSink } from '../../protocols/value-sink.js';
import { LAYERED_BLOCKS, TokenMac } from './token-mac.js';

type Write = (row: Buffer, start: number, end: number, format: number, sink: ValueSink) => number;

const ASTERISK = 0x2a;
const BLOCK = 16;
/** Draws per stream block. */
const DRAWS = BLOCK / 2;
/** Decimal digits of an integer token, by width. */
const DIGITS = { 2: 5, 4: 10, 8: 19 } as const;

/** MAC inputs longer than this are not copied into the batch: see TokenBatch.queueLong. */
const LONG = LAYERED_BLOCKS * BLOCK;
/** Stream blocks a long value's token is drawn from at a time. */
const LONG_WINDOW = 512;

/** Byte kinds: 0 a separator (kept), ALPHANUMERIC (drawn), NON_ASCII (the value is redacted instead). */
const ALPHANUMERIC = 1, NON_ASCII = 2;
const BYTE_KIND = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  const lower = b | 0x20;
  BYTE_KIND[b] = b >= 0x80 ? NON_ASCII : (b >= 0x30 && b <= 0x39) || (lower >= 0x61 && lower <= 0x7a) ? ALPHANUMERIC : 0;
}

/**
 * The token character for an ASCII letter or digit `byte`: a digit, or a letter of its case, from
 * the 16-bit `draw` (draw % 10, draw % 26). The quotients are multiplications by 2^19 / 10 and
 * 2^20 / 26, rounded up, which are exact for every draw below 2^16 (the test checks all of them)
 * and cheaper than a division per character.
 */
export function drawnLike(byte: number, draw: number): number {
  if (byte <= 0x39) return 0x30 + draw - 10 * (Math.imul(draw, 52429) >>> 19);
  return (byte >= 0x61 ? 0x61 : 0x41) + draw - 26 * (Math.imul(draw, 40330) >>> 20);
}

/** What a queued token becomes. */
const TEXT = 0, INTEGER_TEXT = 1, INTEGER_BINARY = 2;

const macs = new WeakMap<Buffer, TokenMac>();
/** One TokenMac per key buffer (its ciphers are reused forever). */
function macFor(key: Buffer): TokenMac {
  let mac = macs.get(key);
  if (mac === undefined) macs.set(key, (mac = new TokenMac(key)));
  return mac;
}

export function textHashMask(key: Buffer, padded: boolean, redact: Write): Write {
  const batches = batchesOf(key);
  return (row, start, end, format, sink) => {
    let macEnd = end;
    if (padded) while (macEnd > start && row[macEnd - 1] === 0x20) macEnd--;
    const n = end - start;
    sink.reserve(n);
    if (!batches(sink).queueText(row, start, macEnd, end, sink)) return redact(row, start, end, format, sink);
    return n;
  };
}

export function integerHashMask(key: Buffer, width: 2 | 4 | 8): Write {
  const batches = batchesOf(key);
  const decimal = new Uint8Array(20); // "-9223372036854775808" is 20 characters
  return (row, start, end, format, sink) => {
    const batch = batches(sink);
    if (format === 1) {
      sink.reserve(width);
      // A binary value of the wrong width cannot come from the server; it still gets a keyed value.
      if (end - start === width) {
        const from = writeCanonicalDecimal(row, start, width, decimal);
        batch.queueInteger(decimal, from, decimal.length, width, true, sink);
      } else batch.queueInteger(row, start, end, width, true, sink);
      return width;
    }
    // Text format: PostgreSQL's integer output is already canonical.
    sink.reserve(DIGITS[width]);
    batch.queueInteger(row, start, end, width, false, sink);
    return DIGITS[width];
  };
}

/** A mask's way to its sink's batch for `key`, remembering the last sink (nearly always the same one). */
function batchesOf(key: Buffer): (sink: ValueSink) => TokenBatch {
  const mac = macFor(key);
  const create = () => new TokenBatch(mac);
  let lastSink: ValueSink | null = null;
  let last: TokenBatch | null = null;
  return (sink) => {
    if (sink !== lastSink) {
      last = sink.batch(mac, create);
      lastSink = sink;
    }
    return last!;
  };
}

interface LongValue { row: Buffer; start: number; macEnd: number; sinkAt: number }

/** The tokens queued in one sink: the values' bytes, and where each token goes. */
class TokenBatch implements SinkBatch {
  private count = 0;
  /** Per token: TEXT / INTEGER_TEXT / INTEGER_BINARY; the integer's width. */
  private kind = new Int32Array(64);
  private width = new Int32Array(64);
  /** Per token: its MAC input in `messages`. */
  private at = new Int32Array(64);
  private length = new Int32Array(64);
  /** Per token: where it goes in the sink; its stream's blocks and where they are in `stream`. */
  private sinkAt = new Int32Array(64);
  private want = new Int32Array(64);
  private streamAt = new Int32Array(64);
  /** MAC inputs, each at a multiple of 16 and padded (own memory: TokenMac reads it as words). */
  private messages = Buffer.from(new ArrayBuffer(4096));
  private used = 0;
  private stream = Buffer.from(new ArrayBuffer(4096));
  /** Long values, kept by reference (queueLong). */
  private readonly long: LongValue[] = [];

  constructor(private readonly mac: TokenMac) {}

  /**
   * A text token for `row[start, end)`, MACed over `[start, macEnd)`, its placeholder written now;
   * false (nothing queued, nothing written) for a value with a byte >= 0x80.
   */
  queueText(row: Buffer, start: number, macEnd: number, end: number, sink: ValueSink): boolean {
    if (macEnd - start > LONG) return this.queueLong(row, start, macEnd, end, sink);
    const i = this.slot(macEnd - start);
    const out = sink.bytes;
    const messages = this.messages;
    const from = this.used;
    let m = from;
    let w = sink.at;
    let letters = 0;
    for (let p = start; p < macEnd; p++, w++) {
      const byte = row[p]!;
      const kind = BYTE_KIND[byte]!;
      if (kind === NON_ASCII) return false;
      messages[m++] = byte;
      letters += kind;
      out[w] = kind === ALPHANUMERIC ? ASTERISK : byte;
    }
    for (let p = macEnd; p < end; p++, w++) out[w] = row[p]!; // bpchar padding: spaces
    this.kind[i] = TEXT;
    this.finish(i, m, sink.at, Math.max(1, Math.ceil(letters / DRAWS)));
    return true;
  }

  /**
   * A long value (rare: a token over more than LONG bytes) is kept by reference, not copied: the
   * row it lies in stays valid until the sink is settled (the caller settles before it lets the
   * row go), and a value may be up to PostgreSQL's 1 GB. Its token is drawn from its stream a
   * window at a time (writeLong), so neither is ever held whole.
   */
  private queueLong(row: Buffer, start: number, macEnd: number, end: number, sink: ValueSink): boolean {
    const out = sink.bytes;
    let w = sink.at;
    for (let p = start; p < end; p++, w++) {
      const byte = row[p]!;
      const kind = BYTE_KIND[byte]!;
      if (kind === NON_ASCII) return false;
      out[w] = kind === ALPHANUMERIC && p < macEnd ? ASTERISK : byte;
    }
    this.long.push({ row, start, macEnd, sinkAt: sink.at });
    return true;
  }

  /** An integer token MACed over `text[start, end)`; the placeholder written now. */
  queueInteger(text: Uint8Array, start: number, end: number, width: 2 | 4 | 8, binary: boolean, sink: ValueSink): void {
    const i = this.slot(end - start);
    const messages = this.messages;
    let m = this.used;
    for (let p = start; p < end; p++) messages[m++] = text[p]!;
    const out = sink.bytes;
    const at = sink.at;
    if (binary) out.fill(0, at, at + width);
    else {
      out[at] = 0x31;
      out.fill(0x30, at + 1, at + DIGITS[width]);
    }
    this.kind[i] = binary ? INTEGER_BINARY : INTEGER_TEXT;
    this.width[i] = width;
    this.finish(i, m, at, Math.ceil((DIGITS[width] - 1) / DRAWS));
  }

  settle(sink: ValueSink): void {
    for (const l of this.long) this.writeLong(l, sink.bytes);
    this.long.length = 0;
    const count = this.count;
    if (count === 0) return;
    let blocks = 0;
    for (let i = 0; i < count; i++) {
      this.streamAt[i] = blocks * BLOCK;
      blocks += this.want[i]!;
    }
    if (this.stream.length < blocks * BLOCK) this.stream = Buffer.from(new ArrayBuffer(2 * blocks * BLOCK));
    this.mac.streams(this.messages, this.at, this.length, this.want, this.streamAt, count, this.stream);
    const out = sink.bytes;
    for (let i = 0; i < count; i++) {
      if (this.kind[i] === TEXT) this.writeText(i, out);
      else this.writeInteger(i, out);
    }
    this.clear();
  }

  clear(): void {
    this.count = 0;
    this.used = 0;
    this.long.length = 0;
  }

  /** The token of a long value, its stream made LONG_WINDOW blocks at a time. */
  private writeLong(l: LongValue, out: Buffer): void {
    const mac = this.mac;
    const tag = mac.tag(l.row, l.start, l.macEnd);
    let window = tag; // block 0 is T itself
    let first = 0;
    let draw = 0;
    for (let p = l.start, w = l.sinkAt; p < l.macEnd; p++, w++) {
      const byte = l.row[p]!;
      const kind = BYTE_KIND[byte]!;
      if (kind !== ALPHANUMERIC) continue;
      const block = draw >> 3;
      if (block >= first + window.length / BLOCK) {
        first = block;
        window = mac.stretch(tag, first, LONG_WINDOW);
      }
      const at = (block - first) * BLOCK + (draw & 7) * 2;
      out[w] = drawnLike(byte, (window[at]! << 8) | window[at + 1]!);
      draw++;
    }
  }

  private writeText(i: number, out: Buffer): void {
    const messages = this.messages;
    const stream = this.stream;
    const from = this.at[i]!;
    const end = from + this.length[i]!;
    let draw = this.streamAt[i]!;
    let w = this.sinkAt[i]!;
    for (let p = from; p < end; p++, w++) {
      const byte = messages[p]!;
      if (BYTE_KIND[byte] !== ALPHANUMERIC) continue;
      out[w] = drawnLike(byte, (stream[draw]! << 8) | stream[draw + 1]!);
      draw += 2;
    }
  }

  private writeInteger(i: number, out: Buffer): void {
    const stream = this.stream;
    const width = this.width[i] as 2 | 4 | 8;
    const digits = DIGITS[width];
    let draw = this.streamAt[i]!;
    const at = this.sinkAt[i]!;
    if (this.kind[i] === INTEGER_TEXT) {
      for (let d = 1; d < digits; d++, draw += 2) out[at + d] = 0x30 + (((stream[draw]! << 8) | stream[draw + 1]!) % 10);
      return; // out[at] is the placeholder's leading '1'
    }
    // Binary: the same number. Its digits after the leading 1, in halves of at most nine.
    const digit = () => { const d = ((stream[draw]! << 8) | stream[draw + 1]!) % 10; draw += 2; return d; };
    if (width !== 8) {
      let n = 1;
      for (let d = 1; d < digits; d++) n = n * 10 + digit();
      if (width === 4) out.writeUInt32BE(n, at);
      else out.writeUInt16BE(n, at);
      return;
    }
    let a = 0, b = 0;
    for (let d = 0; d < 9; d++) a = a * 10 + digit();
    for (let d = 0; d < 9; d++) b = b * 10 + digit();
    // (10^9 + a) * 10^9 + b without leaving exact doubles: 10^9 = 1953125 * 2^9.
    const p = (1e9 + a) * 1953125; // < 2^53
    const pHigh = Math.floor(p / 0x800000);
    const lowPart = (p - pHigh * 0x800000) * 512 + b; // < 2^33
    const carry = Math.floor(lowPart / 0x100000000);
    out.writeUInt32BE(pHigh + carry, at);
    out.writeUInt32BE(lowPart - carry * 0x100000000, at + 4);
  }

  /** The next token's index, with room for its `macLength` bytes of MAC input and their padding. */
  private slot(macLength: number): number {
    if (this.count === this.kind.length) this.grow();
    const room = (macLength & ~15) + BLOCK;
    if (this.used + room > this.messages.length) {
      // Own memory (never the shared pool), so TokenMac can read it as words.
      const next = Buffer.from(new ArrayBuffer(Math.max(2 * this.messages.length, this.used + room)));
      this.messages.copy(next, 0, 0, this.used);
      this.messages = next;
    }
    return this.count;
  }

  /** Records token i, whose MAC input ends at `messagesEnd`, and pads it as CMAC does (TokenMac.streams). */
  private finish(i: number, messagesEnd: number, sinkAt: number, want: number): void {
    const length = messagesEnd - this.used;
    let end = messagesEnd;
    if (length === 0 || (length & 15) !== 0) {
      this.messages[end++] = 0x80;
      while ((end & 15) !== 0) this.messages[end++] = 0;
    }
    this.at[i] = this.used;
    this.length[i] = length;
    this.sinkAt[i] = sinkAt;
    this.want[i] = want;
    this.used = end;
    this.count = i + 1;
  }

  private grow(): void {
    const n = 2 * this.kind.length;
    const grown = (a: Int32Array) => { const b = new Int32Array(n); b.set(a); return b; };
    this.kind = grown(this.kind);
    this.width = grown(this.width);
    this.at = grown(this.at);
    this.length = grown(this.length);
    this.sinkAt = grown(this.sinkAt);
    this.want = grown(this.want);
    this.streamAt = grown(this.streamAt);
  }
}

/** The decimal text PostgreSQL would print for a big-endian signed integer of `width` bytes, right-aligned in `into`. */
function writeCanonicalDecimal(value: Buffer, at: number, width: 2 | 4 | 8, into: Uint8Array): number {
  if (width === 2) { const n = value.readInt16BE(at); return writeDecimal(0, Math.abs(n), n < 0, into); }
  if (width === 4) { const n = value.readInt32BE(at); return writeDecimal(0, Math.abs(n), n < 0, into); }
  let high = value.readUInt32BE(at);
  let low = value.readUInt32BE(at + 4);
  const negative = high >= 0x80000000;
  if (negative) { // two's complement magnitude
    high = ~high >>> 0;
    low = (~low >>> 0) + 1;
    if (low === 0x100000000) { low = 0; high += 1; }
  }
  return writeDecimal(high, low, negative, into);
}

/** Decimal digits of high * 2^32 + low (both unsigned 32-bit), right-aligned in `into`; returns where they start.
 *  Divides by 10 in two 32-bit halves so no step leaves exact double arithmetic. */
function writeDecimal(high: number, low: number, negative: boolean, into: Uint8Array): number {
  let at = into.length;
  do {
    const highRemainder = high % 10;
    high = (high - highRemainder) / 10;
    const rest = highRemainder * 0x100000000 + low;
    const digit = rest % 10;
    low = (rest - digit) / 10;
    into[--at] = 0x30 + digit;
  } while (high !== 0 || low !== 0);
  if (negative) into[--at] = 0x2d;
  return at;
}
