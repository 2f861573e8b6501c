import { describe, expect, it } from 'vitest';
import { createScrubber, type Scrubber } from '../../../src/policy/masking/detectors.js';
import { FINDER_BIT, possibleFinders } from '../../../src/policy/masking/prefilter.js';
import { DETECTORS, type DetectorName } from '../../../src/policy/masking/types.js';
import { group, ibanComplete, luhnComplete, prng, type Random } from './random.js';

const OID = { text: 25, json: 114 } as const;
const ALL = DETECTORS.reduce((mask, name) => mask | FINDER_BIT[name], 0);
/** Each finder alone: its text() runs it on every string with a digit or an '@', so its hits are the ground truth. */
const single = Object.fromEntries(DETECTORS.map((name) => [name, createScrubber([name])!])) as Record<DetectorName, Scrubber>;
const truthOf = (s: string) => DETECTORS.reduce((mask, name) => (single[name].text(s).hits.length > 0 ? mask | FINDER_BIT[name] : mask), 0);

/**
 * The prefilter as it was before the word scan (detectors.ts at 6613525), verbatim but for its
 * names: one pass over every byte with a byte-class table and a card state machine. Kept as the
 * reference: the new one must never let a finder run that this one would have skipped (it is no
 * looser), as well as never skip one that matches.
 */
const OLD_DIGIT = 1, OLD_SPACE = 2, OLD_DASH = 3, OLD_CAPITAL = 4, OLD_AT = 5;
const OLD_BYTE_CLASS = new Uint8Array(256);
for (let b = 0x30; b <= 0x39; b++) OLD_BYTE_CLASS[b] = OLD_DIGIT;
for (let b = 0x41; b <= 0x5a; b++) OLD_BYTE_CLASS[b] = OLD_CAPITAL;
OLD_BYTE_CLASS[0x20] = OLD_SPACE;
OLD_BYTE_CLASS[0x2d] = OLD_DASH;
OLD_BYTE_CLASS[0x40] = OLD_AT;
const CARD_SEEN = 13;
const CARD_STATES = 2 * CARD_SEEN;
const CARD_STEP = new Uint8Array(CARD_STATES * 8);
for (let state = 0; state < CARD_STATES; state++) {
  for (let kind = 0; kind < 8; kind++) {
    const digits = state <= CARD_SEEN ? state : state - CARD_SEEN; // digits so far in the stretch
    const afterDigit = state >= 1 && state < CARD_SEEN;
    let next = 0;
    if (state === CARD_SEEN) next = CARD_SEEN;
    else if (kind === OLD_DIGIT) next = digits + 1;
    else if ((kind === OLD_SPACE || kind === OLD_DASH) && afterDigit) next = state + CARD_SEEN;
    CARD_STEP[state * 8 + kind] = next;
  }
}

function oldPossibleFinders(v: Uint8Array, start: number, end: number): number {
  let state = 0;
  let flags = 0;
  for (let i = start; i < end; i++) {
    const kind = OLD_BYTE_CLASS[v[i]!]!;
    state = CARD_STEP[(state << 3) | kind]!;
    flags |= 1 << kind;
  }
  let found = state === CARD_SEEN ? FINDER_BIT.card_number : 0;
  if (flags & (1 << OLD_AT)) found |= FINDER_BIT.email;
  if ((flags & (1 << OLD_DIGIT)) === 0) return found;
  if (flags & (1 << OLD_DASH) && oldHasSsnShape(v, start, end)) found |= FINDER_BIT.ssn;
  if (flags & (1 << OLD_CAPITAL) && oldHasIbanStart(v, start, end)) found |= FINDER_BIT.iban;
  return found;
}

function oldHasSsnShape(v: Uint8Array, start: number, end: number): boolean {
  for (let i = start + 3; i + 7 < end; i++) {
    if (v[i] !== 0x2d || v[i + 3] !== 0x2d) continue;
    let shape = true;
    for (const k of OLD_SSN_DIGITS) if (OLD_BYTE_CLASS[v[i + k]!] !== OLD_DIGIT) { shape = false; break; }
    if (shape) return true;
  }
  return false;
}
const OLD_SSN_DIGITS = [-3, -2, -1, 1, 2, 4, 5, 6, 7];

function oldHasIbanStart(v: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i + 3 < end; i++) {
    if (OLD_BYTE_CLASS[v[i]!] === OLD_CAPITAL && OLD_BYTE_CLASS[v[i + 1]!] === OLD_CAPITAL && OLD_BYTE_CLASS[v[i + 2]!] === OLD_DIGIT && OLD_BYTE_CLASS[v[i + 3]!] === OLD_DIGIT) return true;
  }
  return false;
}


/** Shapes, their near misses, and the bytes around the word scan's thresholds (0x40, 0x60, high bit). */
const PIECES = [
  '0', '1', '4', '7', '9', '12', '345', '4111', '6789', '0000', ' ', '-', '  ', '--', ' -', '- ',
  '123-45-6789', '000-00-0000', '123-45-678', '12-345-6789', '123-456-789', '1123-45-6789', '123 45 6789', '123-45-67890', '-45-', '3-45-6',
  '4111111111111111', '4111 1111 1111 1111', '4111-1111-1111-1111', '4111111111111112', '4222222222222', '422222222222', '378282246310005',
  '4111  1111 1111 1111', '41111111111111111110', '6011000990139424', '4111 1111 1111 1111 12', '12 4111 1111 1111 1111', '79927398713', '0000000000000',
  'DE89370400440532013000', 'GB82 WEST 1234 5698 7654 32', 'GB82WEST12345698765432', 'DE89370400440532013001', 'NL91ABNA0417164300', 'GB82 WEST', 'XY12',
  'BE68 5390 0754 7034 OKAY', 'NO9386011117947', 'de89370400440532013000', 'FR14 2004 1010 0505 0001 3M02 606', 'AB12', 'ABCD 1234 EFGH 5678', 'DE89 3704',
  'a@b.cd', 'a@b.c', 'user@example.com', 'x.y+z@sub.example.co.uk', '@example.com', 'a@', '@', '.', 'a@b', 'u@ex.io', 'a@xn--p1ai.xn--p1ai', '@@', 'a.@b.cd',
  'a', 'x', 'Z', 'GB', 'DE', 'AB', 'ABCD', 'com', 'order ', ' shipped ', 'c4ca4238a0b923820dcc509a6f75849b', 'deadbeef', '0123456789abcdef', '8765432101234567',
  '\x00', '\x1f', '?', '`', '_', '[', '^', '\x7f', '\x80', '\xa0', '\xc0', '\xe0', '\xe9', '\xff', 'Zoë', ':', '/', ',', '\n',
];
/** Single bytes: digits, separators and capitals most, every other byte some. */
const BYTES = '0123456789012345678901234567890123456789      ----ABCDEFGHIJKLMNOPQRSTUVWXYZ@@@....abcdef?_`\x00\x7f\x80\xbf\xc0\xff';
const DIGITS = '0123456789';
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** A card number of 13 to 19 digits that passes Luhn (often no shorter window of it does), maybe grouped. */
const card = (r: Random) => {
  const number = luhnComplete(r.chars(DIGITS, r.int(12, 18)));
  return r.pick([number, number, group(number, 4, ' '), group(number, 4, '-')]);
};
/** An IBAN of 15 to 34 characters, compact or grouped. */
const iban = (r: Random) => {
  const number = ibanComplete(r.chars(UPPER, 2), r.chars(r.next() < 0.5 ? DIGITS : UPPER + DIGITS, r.int(11, 30)));
  return r.next() < 0.5 ? number : group(number, 4, ' ');
};

/** Shapes that match, made anew each time. */
const SHAPES: ((r: Random) => string)[] = [
  card,
  iban,
  (r) => `${r.chars(DIGITS, 3)}-${r.chars(DIGITS, 2)}-${r.chars(DIGITS, 4)}`,
  (r) => `${r.chars('abcxyz.+_', r.int(1, 6))}@${r.chars('abc-', r.int(1, 5))}.${r.chars('comiuk', r.int(2, 4))}`,
  (r) => r.chars(DIGITS, r.int(30, 70)), // a long stretch: the prefix sums' ring wraps round
  (r) => r.chars(`${DIGITS} `, r.int(13, 40)),
];

/** A value of `length` bytes (latin1), of pieces, shapes or single bytes. */
function nasty(r: Random, length: number): string {
  let s = '';
  const bytewise = r.next() < 0.25;
  while (s.length < length) s += bytewise ? r.pick(BYTES) : r.next() < 0.25 ? r.pick(SHAPES)(r) : r.pick(PIECES);
  return r.next() < 0.5 ? s.slice(0, length) : s.slice(s.length - length);
}

const LENGTHS = [0, 1, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 31, 32, 33, 40, 48, 64, 97, 128, 200];

/**
 * `s` as latin1 bytes at a random offset of a random buffer: the bytes around it are '@',
 * digits and capitals (which the prefilter must not see), and sometimes the value ends its
 * ArrayBuffer, whose length is then not a whole number of words.
 */
function placed(r: Random, s: string): { buffer: Buffer; start: number; end: number } {
  const value = Buffer.from(s, 'latin1');
  const before = r.int(0, 9);
  const after = r.next() < 0.3 ? 0 : r.int(1, 9);
  const pad = r.int(0, 3); // the buffer's offset in its ArrayBuffer, so values start at every offset in a word
  const buffer = Buffer.from(new ArrayBuffer(pad + before + value.length + after), pad, before + value.length + after);
  for (let i = 0; i < buffer.length; i++) buffer[i] = r.pick([0x40, 0x31, 0x34, 0x41, 0x2d, 0x20]);
  value.copy(buffer, before);
  return { buffer, start: before, end: before + value.length };
}

describe('possibleFinders', () => {
  it('names every finder that matches, and never one the byte-by-byte prefilter would have skipped', () => {
    const r = prng(7);
    const failures: string[] = [];
    for (let n = 0; n < 12_000 && failures.length < 5; n++) {
      const s = nasty(r, r.pick(LENGTHS));
      const { buffer, start, end } = placed(r, s);
      const truth = truthOf(s);
      const old = oldPossibleFinders(buffer, start, end);
      if ((truth & ~old) !== 0) failures.push(`the old reference misses ${truth & ~old} in ${JSON.stringify(s)}`);
      for (let enabled = 1; enabled <= ALL; enabled++) {
        const got = possibleFinders(buffer, start, end, enabled);
        if ((got & ~enabled) !== 0 || (truth & enabled & ~got) !== 0 || (got & ~old) !== 0) {
          failures.push(`${JSON.stringify(s)} at ${start} of ${buffer.length} (offset ${buffer.byteOffset}), enabled ${enabled}: got ${got}, matches ${truth}, old ${old}`);
          break;
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('masks values byte for byte as the text path does, through valueAt and forType, in any buffer and at any offset', () => {
    const r = prng(11);
    const scrubbers = [[...DETECTORS], ['ssn'], ['card_number'], ['iban'], ['email'], ['ssn', 'card_number'], ['iban', 'email']].map((d) => createScrubber(d as DetectorName[])!);
    const failures: string[] = [];
    let masked = 0;
    // Some values share a buffer with the one before (the word view is kept), most do not.
    let shared: { buffer: Buffer; start: number; end: number } | null = null;
    for (let n = 0; n < 6_000 && failures.length < 5; n++) {
      const s = nasty(r, r.pick(LENGTHS));
      let at = placed(r, s);
      if (shared !== null && r.next() < 0.3 && shared.buffer.length >= s.length) {
        const start = r.int(0, shared.buffer.length - s.length);
        shared.buffer.write(s, start, 'latin1');
        at = { buffer: shared.buffer, start, end: start + s.length };
      }
      shared = at;
      const { buffer, start, end } = at;
      for (const scrubber of scrubbers) {
        const expected = scrubber.text(s);
        const byValue = scrubber.valueAt(buffer, start, end, 0, OID.text);
        const byType = scrubber.forType(OID.text)!(buffer, start, end);
        const asJson = scrubber.forType(OID.json)!(buffer, start, end);
        const got = byValue === null ? { text: s, hits: [] } : { text: byValue.value!.toString('latin1'), hits: byValue.hits };
        if (got.hits.length > 0) masked++;
        const sameByType = JSON.stringify(byType === null ? null : { value: byType.value!.toString('latin1'), hits: byType.hits }) === JSON.stringify(byValue === null ? null : { value: got.text, hits: got.hits });
        const sameAsJson = JSON.stringify(asJson) === JSON.stringify(expected.hits.length === 0 ? null : { value: null, hits: expected.hits });
        if (JSON.stringify(got) !== JSON.stringify(expected) || !sameByType || !sameAsJson) {
          failures.push(`${JSON.stringify(s)}: valueAt ${JSON.stringify(got)}, forType ${sameByType}, json ${sameAsJson}, text ${JSON.stringify(expected)}`);
        }
      }
    }
    expect(failures).toEqual([]);
    expect(masked).toBeGreaterThan(1000); // the values hold shapes, not only near misses
  });

  it('finds each shape of every length at every offset in a word, beside every kind of byte', () => {
    const r = prng(5);
    const cards = Array.from({ length: 200 }, () => card(r));
    const ibans = Array.from({ length: 200 }, () => iban(r));
    const shapes = [...cards, ...ibans, 'NO9386011117947', 'NO93 8601 1117 947', '123-45-6789', 'a@b.cd', 'alice.smith+x@mail.example.co.uk',
      // a card after a stretch of digits longer than the prefix sums' ring, in the same run
      `${'7'.repeat(40)}  4111111111111111`, `${'1'.repeat(33)}--4222222222222`];
    // Bytes of 0x60 and up end the runs the word scan counts: sides of them make the runs exactly as long as the shapes.
    const sides = ['', ' ', '.', ',', '`', '~', '\x7f', '\xe9', '\xff', '_', ':', 'x', 'Q', '9 ', '--', 'end of line\n', 'order 12 shipped: ', 'xyz`', '\xe9~\xe9~', '~~~~~~~~'];
    const scrubber = createScrubber([...DETECTORS])!;
    const failures: string[] = [];
    let hits = 0;
    for (const shape of shapes) {
      for (const [left, right] of sides.flatMap((side) => [[side, r.pick(sides)], [side, [...side].reverse().join('')]])) {
        const s = `${left}${shape}${right}`;
        const expected = scrubber.text(s);
        if (expected.hits.length > 0) hits++;
        for (let offset = 0; offset < 4; offset++) {
          const buffer = Buffer.alloc(offset + s.length + 4, 0x40); // '@' all round
          buffer.write(s, offset, 'latin1');
          const found = scrubber.valueAt(buffer, offset, offset + s.length, 0, OID.text);
          const got = found === null ? { text: s, hits: [] } : { text: found.value!.toString('latin1'), hits: found.hits };
          if (JSON.stringify(got) !== JSON.stringify(expected)) failures.push(`${JSON.stringify(s)} at ${offset}: ${JSON.stringify(got)}, text ${JSON.stringify(expected)}`);
        }
      }
    }
    expect(failures.slice(0, 5)).toEqual([]);
    expect(hits).toBeGreaterThan(shapes.length * sides.length * 0.8);
  });

  it('runs no finder on the clear values of the masking bench but on those that hold a card number', async () => {
    const { createHash } = await import('node:crypto');
    const md5 = (s: string) => createHash('md5').update(s).digest('hex');
    const names = ['Alice', 'Bob', 'Carol', 'Dave', 'Erin', 'Frank', 'Grace', 'Heidi'];
    const all = createScrubber([...DETECTORS])!;
    const failures: string[] = [];
    for (let g = 1; g <= 3000; g++) {
      for (const s of [names[g % 8]!, 'Abcdefghij', 'Abcdefgh', ['active', 'closed', 'pending'][g % 3]!, `order ${g} shipped to warehouse ${g % 97}: ${md5(String(g))} ${md5(String(g + 1))}`]) {
        const bytes = Buffer.from(`|${s}|`, 'latin1');
        const possible = possibleFinders(bytes, 1, bytes.length - 1, ALL);
        const hits = all.text(s).hits.length;
        if ((possible !== 0) !== (hits !== 0) || possible & ~FINDER_BIT.card_number) failures.push(`${s}: ${possible}, ${hits} hits`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('stays linear on long runs of every class it reads byte by byte', () => {
    const all = createScrubber([...DETECTORS])!;
    for (const hostile of ['1 '.repeat(200_000), '1'.repeat(400_000), '12-'.repeat(130_000), 'AB12 '.repeat(80_000), 'A'.repeat(400_000), '@a.'.repeat(130_000)]) {
      const found = all.value(Buffer.from(hostile, 'latin1'), 0, OID.text);
      expect(found === null ? hostile.length : found.value!.length).toBe(hostile.length);
    }
  });
});
