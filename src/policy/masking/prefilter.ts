/**
 * The content detectors' prefilter (detectors.ts): from a value's raw bytes, without a string or
 * a RegExp, the finders that may match it. It may name a finder that then finds nothing, never
 * leave out one that would match (masking fails closed): each condition below is implied by its
 * finder's pattern. It runs on every clear text value of every row, so what counts is its cost
 * on values that hold nothing (names, statuses, md5 hex, prose):
 * - a value shorter than a finder's shortest match cannot hold one (SHORTEST);
 * - a longer one is read a 32-bit word (four bytes) at a time with bit tricks, not byte by byte
 *   (where each byte's branches on hex digits would be mispredicted): an email needs an '@'; a
 *   card number or an SSN lies in a run of digits, spaces and dashes at least 11 bytes long,
 *   which covers two whole words of bytes below 0x40; an IBAN in a run of capitals, digits and
 *   spaces at least 15 long, which covers three of bytes below 0x60. Only where such words meet,
 *   and the words either side can make the run that long, is the run read byte by byte and its
 *   shapes checked: a card number's digits passing Luhn, NNN-NN-NNNN, an IBAN's CCDD.
 * md5 hex, names and most prose come out with no finder, and are never turned into a string.
 */
import { LITTLE_ENDIAN, withoutFirstBytes, wordsOver } from '../../memory-words.js';
import type { DetectorName } from './types.js';

export const FINDER_BIT: Record<DetectorName, number> = { ssn: 1, card_number: 2, iban: 4, email: 8 };
const SSN = FINDER_BIT.ssn, CARD = FINDER_BIT.card_number, IBAN = FINDER_BIT.iban, EMAIL = FINDER_BIT.email;

/** The length in bytes of each finder's shortest match: NNN-NN-NNNN, 13 digits, CCDD and 11
 *  more (a grouped IBAN is longer than its compact form), a@b.cd. */
const SHORTEST = { ssn: 11, card_number: 13, iban: 15, email: 6 } as const;
/** Card numbers have 13 to 19 digits (CARD_MIN and CARD_MAX in detectors.ts). */
const CARD_MIN = 13, CARD_MAX = 19;

/** The smallest SHORTEST of the finders in a mask of FINDER_BIT (a small integer, never a double). */
const SHORTEST_OF = Int32Array.from({ length: 16 }, (_, mask) =>
  Math.min(0x7fffffff, ...(Object.keys(FINDER_BIT) as DetectorName[]).filter((name) => mask & FINDER_BIT[name]).map((name) => SHORTEST[name])));

/** Values shorter than this are read byte by byte: too few words to pay for the word scan. */
const WORD_SCAN_MIN = 16;

/** Of the finders in `enabled` (a mask of FINDER_BIT), those that may match `v[start, end)`. */
export function possibleFinders(v: Uint8Array, start: number, end: number, enabled: number): number {
  const length = end - start;
  if (length < SHORTEST_OF[enabled]!) return 0;
  return length < WORD_SCAN_MIN ? byBytes(v, start, end, enabled) : byWords(v, start, end, enabled);
}

/** Byte classes of the runs the shapes lie in, and of the shapes' own characters. */
const DIGIT = 1, CAPITAL = 2, SEPARATOR = 4, DIGIT_RUN = 8, UPPER_RUN = 16;
const CLASS = new Uint8Array(256);
for (let b = 0x30; b <= 0x39; b++) CLASS[b] = DIGIT | DIGIT_RUN | UPPER_RUN;
for (let b = 0x41; b <= 0x5a; b++) CLASS[b] = CAPITAL | UPPER_RUN;
CLASS[0x20] = SEPARATOR | DIGIT_RUN | UPPER_RUN;
CLASS[0x2d] = SEPARATOR | DIGIT_RUN;

function byBytes(v: Uint8Array, start: number, end: number, enabled: number): number {
  const length = end - start;
  let found = 0;
  if (enabled & EMAIL && length >= SHORTEST.email && hasAt(v, start + 1, end - 4)) found |= EMAIL;
  if (enabled & CARD && length >= SHORTEST.card_number && hasLuhnStretch(v, start, end)) found |= CARD;
  if (enabled & SSN && length >= SHORTEST.ssn && hasSsnShape(v, start, end)) found |= SSN;
  if (enabled & IBAN && length >= SHORTEST.iban && hasIbanStart(v, start, end)) found |= IBAN;
  return found;
}

/** Some '@' in v[from, to). */
function hasAt(v: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (v[i] === 0x40) return true;
  return false;
}

/** The buffer last scanned, its words (memory-words.ts) and where it starts in them: a DataRow's
 *  values are ranges of the chunk itself, so most scans skip even the `.buffer` getter. */
let viewed: Uint8Array | null = null;
let words: Int32Array<ArrayBufferLike> | null = null;
let viewedBase = 0;

function wordsOf(v: Uint8Array): Int32Array<ArrayBufferLike> | null {
  if (v === viewed) return words;
  words = wordsOver(v.buffer);
  viewed = words === null ? null : v;
  viewedBase = v.byteOffset;
  return words;
}

// The word tricks are written with literal masks: a module constant above 2^30 is a heap
// number, which the hot loop would load and convert for every word.

/** Of a word's bits `out` that show which bytes are outside a run's class: how many bytes at
 *  its start in memory (its end) are in the class. 4 when all are. */
const lowIn = (out: number) => (32 - Math.clz32((out & -out) - 1)) >> 3;
const highIn = (out: number) => Math.clz32(out) >> 3;
const firstIn = LITTLE_ENDIAN ? lowIn : highIn;
const lastIn = LITTLE_ENDIAN ? highIn : lowIn;

/** Nonzero in a byte's high bit where x has an '@': (y - 0x01010101) & ~y & 0x80808080 is
 *  nonzero iff some byte of y is 0 (Bit Twiddling Hacks, "haszero"). */
const atBits = (x: number) => { const y = x ^ 0x40404040; return (y - 0x01010101) & ~y; };

function byWords(v: Uint8Array, start: number, end: number, enabled: number): number {
  const w = wordsOf(v);
  if (w === null) return byBytes(v, start, end, enabled);
  const from = viewedBase + start, to = viewedBase + end;
  const first = (from + 3) >> 2; // the whole words of the value: w[first, last)
  const last = to >> 2;
  // An '@' in the bytes before the first whole word: their word with the bytes before the value
  // zeroed. One in the last three bytes has no domain after it; the runs the other shapes lie
  // in cover whole words.
  let at = from & 3 ? atBits(withoutFirstBytes(w[first - 1]!, from & 3)) : 0;
  let found = 0;
  let digitsWanted = enabled & (SSN | CARD);
  let ibanWanted = enabled & IBAN;
  let digitsSeen = start; // the runs before these offsets have been checked
  let upperSeen = start;
  // A word's bits that show a byte of 0x60 or more (upperOut), and the two words' before.
  let out = 0, before = -1, twoBefore = -1;
  for (let k = first; k < last; k++) {
    // No calls in these loops, so the view's bounds are not checked again for every word. Two
    // words a step while no pair stops it (half the loop's own cost), then one a step to the pair.
    for (; k + 1 < last; k += 2) {
      const x = w[k]!, next = w[k + 1]!;
      const xOut = upperOut(x), nextOut = upperOut(next);
      if (((xOut | before) === 0) || ((xOut | nextOut) === 0)) break;
      at |= atBits(x) | atBits(next);
      twoBefore = xOut;
      before = nextOut;
    }
    for (; k < last; k++) {
      const x = w[k]!;
      at |= atBits(x);
      out = upperOut(x);
      if ((out | before) === 0) break;
      twoBefore = before;
      before = out;
    }
    if (k === last) break;
    // Two whole words of bytes below 0x60 in a row: rare (in an md5, a few times in three), and
    // perhaps part of a run of a card number or SSN (bytes below 0x40) or of an IBAN.
    const offset = ((k - 1) << 2) - viewedBase; // the pair's first byte
    if (digitsWanted !== 0 && offset >= digitsSeen && digitRunMayFit(w, k, first, last, digitsWanted)) {
      digitsSeen = runAround(v, start, end, offset, DIGIT_RUN);
      const shapes = digitShapes(v, runStart, digitsSeen, digitsWanted);
      found |= shapes;
      digitsWanted &= ~shapes;
    }
    if (ibanWanted !== 0 && twoBefore === 0 && offset >= upperSeen && upperRunMayFit(w, k, first, last)) {
      upperSeen = runAround(v, start, end, offset, UPPER_RUN);
      if (upperSeen - runStart >= SHORTEST.iban && hasIbanStart(v, runStart, upperSeen)) {
        found |= IBAN;
        ibanWanted = 0;
      }
    }
    twoBefore = before;
    before = out;
  }
  if (enabled & EMAIL && (at & 0x80808080) !== 0) found |= EMAIL;
  return found;
}

/** The bits of a word that show its bytes of 0x40 and up (outside a digit run's class). */
const digitOut = (x: number) => x & 0xc0c0c0c0;
/** The bits of a word that show its bytes of 0x60 and up (outside an IBAN run's class): bits 6 and 5 both set, or 7. */
const upperOut = (x: number) => (x & (x << 1) & 0x40404040) | (x & 0x80808080);

/**
 * Whether w[k - 1] and w[k], two whole words of bytes below 0x60, may be part of a run of digits,
 * spaces and dashes with a card number in it (13 bytes) or an SSN (11 bytes; its first whole
 * word holds its first dash): the bytes below 0x40 in the words either side are counted. Of the
 * pairs of words a run covers, one with its neighbours counts the run's length or 16 bytes.
 * Near the value's ends the bytes outside its whole words are not counted: the run is looked at.
 */
function digitRunMayFit(w: Int32Array<ArrayBufferLike>, k: number, first: number, last: number, wanted: number): boolean {
  if (digitOut(w[k - 1]! | w[k]!) !== 0) return false;
  if (k - 2 < first || k + 1 >= last) return true;
  const length = lastIn(digitOut(w[k - 2]!)) + 8 + firstIn(digitOut(w[k + 1]!));
  if (wanted & CARD && length >= SHORTEST.card_number) return true;
  return (wanted & SSN) !== 0 && length >= SHORTEST.ssn && (hasDash(w[k - 1]!) || hasDash(w[k]!));
}

/** Some byte of x is '-' ("haszero" of x ^ 0x2d2d2d2d). */
const hasDash = (x: number) => { const y = x ^ 0x2d2d2d2d; return ((y - 0x01010101) & ~y & 0x80808080) !== 0; };

/** Whether w[k - 2, k + 1), three whole words of bytes below 0x60, may be part of a run of
 *  capitals, digits and spaces as long as an IBAN (15 bytes), as digitRunMayFit. */
function upperRunMayFit(w: Int32Array<ArrayBufferLike>, k: number, first: number, last: number): boolean {
  if (k - 3 < first || k + 1 >= last) return true;
  return lastIn(upperOut(w[k - 3]!)) + 12 + firstIn(upperOut(w[k + 1]!)) >= SHORTEST.iban;
}

/** Of `wanted` (ssn, card_number or both), the shapes in v[a, b), a run of digits, spaces and dashes. */
function digitShapes(v: Uint8Array, a: number, b: number, wanted: number): number {
  let shapes = 0;
  if (wanted & CARD && b - a >= SHORTEST.card_number && hasLuhnStretch(v, a, b)) shapes |= CARD;
  if (wanted & SSN && b - a >= SHORTEST.ssn && hasSsnShape(v, a, b)) shapes |= SSN;
  return shapes;
}

/** Where runAround's run starts (a second result without an allocation). */
let runStart = 0;

/** The end of the run of bytes of class `kind` in v[start, end) that holds v[at], its start in
 *  runStart; an empty run at `at` if v[at] is not of the class. */
function runAround(v: Uint8Array, start: number, end: number, at: number, kind: number): number {
  runStart = at;
  if ((CLASS[v[at]!]! & kind) === 0) return at;
  while (runStart > start && CLASS[v[runStart - 1]!]! & kind) runStart--;
  let b = at + 1;
  while (b < end && CLASS[v[b]!]! & kind) b++;
  return b;
}

/** Double a digit, the digits of the product summed (Luhn). */
const DOUBLED = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];
/** Of the last 32 (> CARD_MAX) digits of a stretch, by position: the Luhn sums of the digits
 *  before it (with the even positions not doubled, or the odd ones), and whether it starts a group. */
const EVEN_PLAIN = new Int32Array(32), ODD_PLAIN = new Int32Array(32), STARTS_GROUP = new Uint8Array(32);

/**
 * A card number as the finder takes it in v[a, b): CARD_MIN to CARD_MAX digits of a stretch of
 * digits joined by at most one space or dash, starting and ending a group of it, that pass Luhn
 * (ISO/IEC 7812-1 Annex B: every second digit from the right doubled). Checked here, the finder
 * no longer runs on the digit runs of hex ids, nine in ten of which fail. At each group's end,
 * each of the at most seven windows ending there is summed in O(1) from the prefix sums.
 */
function hasLuhnStretch(v: Uint8Array, a: number, b: number): boolean {
  let n = 0; // digits in the stretch so far
  let afterDigit = false;
  let evenPlain = 0; // the Luhn sum of those digits when the ones at even positions are not doubled
  let oddPlain = 0;
  EVEN_PLAIN[0] = ODD_PLAIN[0] = 0;
  for (let i = a; i <= b; i++) {
    const byte = i < b ? v[i]! : 0; // a last step past the run ends its last group
    const kind = CLASS[byte]!;
    if (kind & DIGIT) {
      STARTS_GROUP[n & 31] = afterDigit ? 0 : 1;
      const digit = byte - 0x30;
      if (n & 1) { evenPlain += DOUBLED[digit]!; oddPlain += digit; } else { evenPlain += digit; oddPlain += DOUBLED[digit]!; }
      n++;
      EVEN_PLAIN[n & 31] = evenPlain;
      ODD_PLAIN[n & 31] = oddPlain;
      afterDigit = true;
      continue;
    }
    if (afterDigit) {
      // Digit n - 1 ends a group: the windows ending there that start a group. A window's last
      // digit is not doubled, so which sum applies goes by its parity.
      for (let length = CARD_MIN; length <= CARD_MAX && length <= n; length++) {
        const from = (n - length) & 31;
        const sum = (n - 1) & 1 ? oddPlain - ODD_PLAIN[from]! : evenPlain - EVEN_PLAIN[from]!;
        if (STARTS_GROUP[from] === 1 && sum % 10 === 0) return true;
      }
    }
    if (!(kind & SEPARATOR && afterDigit)) { // a stretch ends at two separators or another byte
      n = evenPlain = oddPlain = 0;
      EVEN_PLAIN[0] = ODD_PLAIN[0] = 0;
    }
    afterDigit = false;
  }
  return false;
}

/** Some "NNN-NN-NNNN" in v[a, b). */
function hasSsnShape(v: Uint8Array, a: number, b: number): boolean {
  for (let i = a + 3; i + 7 < b; i++) {
    if (v[i] !== 0x2d || v[i + 3] !== 0x2d) continue;
    let shape = true;
    for (const k of SSN_DIGITS) if ((CLASS[v[i + k]!]! & DIGIT) === 0) { shape = false; break; }
    if (shape) return true;
  }
  return false;
}
/** Offsets from the first dash of an SSN of its digits. */
const SSN_DIGITS = [-3, -2, -1, 1, 2, 4, 5, 6, 7];

/** Two capitals and two digits in v[a, b) with the rest of a shortest IBAN after them. */
function hasIbanStart(v: Uint8Array, a: number, b: number): boolean {
  for (let i = a; i + SHORTEST.iban <= b; i++) {
    if (CLASS[v[i]!]! & CAPITAL && CLASS[v[i + 1]!]! & CAPITAL && CLASS[v[i + 2]!]! & DIGIT && CLASS[v[i + 3]!]! & DIGIT) return true;
  }
  return false;
}
