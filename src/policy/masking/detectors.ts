/**
 * Content detectors: the second net over text that leaves (result values no rule masks, COPY
 * data, notices, errors, notifications, ParameterStatus). Each match is replaced in place by the
 * same number of characters, every ASCII letter and digit becoming '*' and separators kept
 * ("id 123-45-6789 x" -> "id ***-**-**** x").
 *
 * What counts as a match (the trade-offs are in the README):
 * - ssn: NNN-NN-NNNN with dashes, not touching another digit. No area/group/serial exclusions
 *   (000-, 666-, 9xx ITINs are masked too: fail closed, and the dashed 3-2-4 shape is rarely
 *   anything else). Undashed 9-digit runs are not matched: every zip+4, phone and id would be.
 * - card_number: 13 to 19 digits, optionally grouped by single spaces or dashes, passing Luhn,
 *   bounded by non-digits. A run of grouped digits is tried at every group boundary, so a card
 *   after another number ("ref 12 4111 1111 1111 1111") is still found; a run of 20+ digits with
 *   no separators is not a card. No issuer-prefix check: 1 in 10 digit runs of that length pass Luhn, which is why numeric columns are never scanned.
 * - iban: two capital letters, two check digits, 11 to 30 capitals or digits, either compact or
 *   in groups of four separated by single spaces, mod-97 == 1 (ISO 13616), bounded by
 *   non-alphanumerics. Lower-case IBANs are not matched (lower-case hex ids would be, 1 in 97).
 * - email: local@domain.tld: RFC 5322 dot-atoms on the left, LDH labels on the right, at least
 *   two labels, a last label of 2 to 63 letters (or an `xn--` punycode label). Found from each '@'
 *   outwards, so a long value costs one pass (no regex backtracking to exploit).
 *
 * Bytes are scanned as latin1 (one character a byte): replacements are ASCII, so any
 * ASCII-compatible client encoding stays valid, and a multibyte character never matches.
 */
import { isAlphanumeric, isTextLike } from './methods.js';
import { FINDER_BIT, possibleFinders } from './prefilter.js';
import type { DetectorName } from './types.js';

/** `Scrubber.valueAt` for the values of one type. */
export type ValueScan = (v: Buffer, start: number, end: number) => { value: Buffer | null; hits: DetectorName[] } | null;

export interface Scrubber {
  /** The text with every match replaced (the same string when nothing matched). */
  text(s: string): { text: string; hits: DetectorName[] };
  /** null when nothing matched: the caller forwards the original bytes. A match in a text-like
   *  type is replaced in place; in any other type the value becomes SQL NULL (an in-place '*'
   *  would not be a valid int8 or json). */
  value(v: Buffer, format: number, typeOid: number): { value: Buffer | null; hits: DetectorName[] } | null;
  /** `value` of the bytes `v[start, end)` (a value inside a message): the same answer, and a
   *  replacement of its own, never sharing `v`. */
  valueAt(v: Buffer, start: number, end: number, format: number, typeOid: number): { value: Buffer | null; hits: DetectorName[] } | null;
  /** `valueAt` for values of this type, its checks of the type made once (for a result column);
   *  null when values of this type are never scanned. */
  forType(typeOid: number): ValueScan | null;
  /** Whether values of this type are ever scanned (false: `value` always returns null for it). */
  scans(typeOid: number): boolean;
}

interface Match { start: number; end: number; detector: DetectorName }

/** Types whose values never carry free text, in either format (numbers, times, network and
 *  geometric types, bits, uuid), and bytea (random blobs would trip the email shape). Numbers are
 *  not scanned even as text: about one in ten long ids or millisecond timestamps passes Luhn.
 *  Every other value is scanned as raw bytes: text-like types, json and jsonb (a version byte,
 *  then text), arrays, enums, composites, citext and other types whose OIDs only the catalog knows. */
const NEVER_TEXT = new Set<number>([
  16, 17, 18, 20, 21, 23, 26, 27, 28, 29, 600, 601, 602, 603, 604, 628, 650, 700, 701, 718, 774, 790, 829, 869,
  1082, 1083, 1114, 1184, 1186, 1266, 1560, 1562, 1700, 2950, 3220, 5069,
]);

/** Resolution order when two detectors claim the same characters. */
const PRIORITY: readonly DetectorName[] = ['iban', 'email', 'ssn', 'card_number'];

export function createScrubber(detectors: DetectorName[]): Scrubber | null {
  const enabled = new Set(detectors);
  if (enabled.size === 0) return null;
  const needsDigit = enabled.has('ssn') || enabled.has('card_number') || enabled.has('iban');
  const needsAt = enabled.has('email');
  const order = PRIORITY.filter((name) => enabled.has(name));

  const enabledMask = order.reduce((m, name) => m | FINDER_BIT[name], 0);
  /** `only`: a mask of FINDER_BIT, the finders that can match this value at all. */
  const find = (s: string, only = enabledMask): Match[] => {
    const matches: Match[] = [];
    for (const name of order) if (only & FINDER_BIT[name]) FINDERS[name](s, matches);
    return resolveOverlaps(matches);
  };
  const worthScanning = (s: string) => (needsDigit && /[0-9]/.test(s)) || (needsAt && s.includes('@'));

  /** The matches in v[start, end), null for none. */
  const matchesIn = (v: Buffer, start: number, end: number): Match[] | null => {
    const possible = possibleFinders(v, start, end, enabledMask);
    if (possible === 0) return null;
    const matches = find(v.toString('latin1', start, end), possible);
    return matches.length === 0 ? null : matches;
  };
  const replaced = (v: Buffer, start: number, end: number, matches: Match[]) => ({ value: maskBytes(v, start, end, matches), hits: matches.map((m) => m.detector) });
  const nulled = (matches: Match[]) => ({ value: null, hits: matches.map((m) => m.detector) });

  const inPlace: ValueScan = (v, start, end) => {
    const matches = matchesIn(v, start, end);
    return matches === null ? null : replaced(v, start, end, matches);
  };
  const nulling: ValueScan = (v, start, end) => {
    const matches = matchesIn(v, start, end);
    return matches === null ? null : nulled(matches);
  };
  const valueAt: Scrubber['valueAt'] = (v, start, end, _format, typeOid) => {
    if (NEVER_TEXT.has(typeOid)) return null;
    const matches = matchesIn(v, start, end);
    if (matches === null) return null;
    return isTextLike(typeOid) ? replaced(v, start, end, matches) : nulled(matches);
  };

  return {
    text(s) {
      if (!worthScanning(s)) return { text: s, hits: [] };
      const matches = find(s);
      if (matches.length === 0) return { text: s, hits: [] };
      return { text: maskString(s, matches), hits: matches.map((m) => m.detector) };
    },
    value: (v, format, typeOid) => valueAt(v, 0, v.length, format, typeOid),
    valueAt,
    forType: (typeOid) => (NEVER_TEXT.has(typeOid) ? null : isTextLike(typeOid) ? inPlace : nulling),
    scans: (typeOid) => !NEVER_TEXT.has(typeOid),
  };
}

/** Digits of a card number (CARD_RUN's {12,} is CARD_MIN - 1). */
const CARD_MIN = 13;
const CARD_MAX = 19;

/** Sorted by position; a match inside another one is dropped (its characters are masked anyway). */
function resolveOverlaps(matches: Match[]): Match[] {
  if (matches.length < 2) return matches;
  matches.sort((a, b) => a.start - b.start || b.end - a.end || PRIORITY.indexOf(a.detector) - PRIORITY.indexOf(b.detector));
  const kept: Match[] = [];
  let reach = -1;
  for (const match of matches) {
    if (match.end <= reach) continue;
    kept.push(match);
    reach = match.end;
  }
  return kept;
}

function maskString(s: string, matches: Match[]): string {
  let out = '';
  let at = 0;
  for (const { start, end } of matches) {
    const from = Math.max(start, at);
    out += s.slice(at, from) + s.slice(from, end).replace(/[A-Za-z0-9]/g, '*');
    at = Math.max(at, end);
  }
  return out + s.slice(at);
}

/** A copy of v[from, to) with the matches (offsets from `from`) masked. */
function maskBytes(v: Buffer, from: number, to: number, matches: Match[]): Buffer {
  const out = Buffer.from(v.subarray(from, to));
  for (const { start, end } of matches) {
    for (let i = start; i < end; i++) if (isAlphanumeric(out[i]!)) out[i] = 0x2a;
  }
  return out;
}

type Finder = (s: string, into: Match[]) => void;

const SSN_SHAPE = /(?<![0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9])/g;

// The finders step shared global RegExps with exec by hand (String.prototype.matchAll would
// clone the RegExp for every value; a generator costs more than the match itself on short values).

function findSsns(s: string, into: Match[]): void {
  const pattern = SSN_SHAPE;
  pattern.lastIndex = 0;
  for (let m = pattern.exec(s); m !== null; m = pattern.exec(s)) into.push({ start: m.index, end: m.index + m[0].length, detector: 'ssn' });
}

/** Digits joined by at most one space or dash, at least CARD_MIN of them: the stretch a card
 *  number may sit in. A match is a whole run: it starts at a digit no digit precedes and is
 *  greedy, so shorter runs (most digit runs in text) are passed over inside the RegExp engine. */
const CARD_RUN = /(?<![0-9])[0-9](?:[ -]?[0-9]){12,}/g;

function findCardNumbers(s: string, into: Match[]): void {
  const pattern = CARD_RUN;
  pattern.lastIndex = 0;
  for (let m = pattern.exec(s); m !== null; m = pattern.exec(s)) {
    const run = m[0];
    const positions: number[] = []; // offsets in `run` of its digits
    for (let i = 0; i < run.length; i++) if (run.charCodeAt(i) !== 0x20 && run.charCodeAt(i) !== 0x2d) positions.push(i);
    // A card starts at the run's start or after a separator, and ends at the run's end or before one.
    const startsGroup = (k: number) => k === 0 || positions[k]! - positions[k - 1]! > 1;
    const endsGroup = (k: number) => k === positions.length || startsGroup(k);
    let k = 0;
    while (k + CARD_MIN <= positions.length) {
      let found = 0;
      if (startsGroup(k)) {
        for (let length = Math.min(CARD_MAX, positions.length - k); length >= CARD_MIN; length--) {
          if (endsGroup(k + length) && passesLuhn(run, positions, k, k + length)) { found = length; break; }
        }
      }
      if (found === 0) { k++; continue; }
      into.push({ start: m.index + positions[k]!, end: m.index + positions[k + found - 1]! + 1, detector: 'card_number' });
      k += found;
    }
  }
}

/** ISO/IEC 7812-1 Annex B: double every second digit from the right. */
function passesLuhn(run: string, positions: number[], from: number, to: number): boolean {
  let sum = 0;
  for (let k = to - 1, double = false; k >= from; k--, double = !double) {
    let digit = run.charCodeAt(positions[k]!) - 0x30;
    if (double && (digit *= 2) > 9) digit -= 9;
    sum += digit;
  }
  return sum % 10 === 0;
}

const IBAN_COMPACT = /(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}(?![A-Za-z0-9])/g;
/** Print format: groups of four, the last one shorter (bounded, so a rescan after a miss stays linear). */
const IBAN_GROUPED = /(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?(?![A-Za-z0-9])/g;

function findIbans(s: string, into: Match[]): void {
  const compact = IBAN_COMPACT;
  compact.lastIndex = 0;
  for (let m = compact.exec(s); m !== null; m = compact.exec(s)) {
    if (passesIbanCheck(m[0])) into.push({ start: m.index, end: m.index + m[0].length, detector: 'iban' });
  }
  const grouped = IBAN_GROUPED; // stepped by hand: a miss restarts one character later
  grouped.lastIndex = 0;
  for (let m = grouped.exec(s); m !== null; m = grouped.exec(s)) {
    const groups = m[0].split(' ');
    let matchedLength = 0;
    // The shape may have swallowed a following word of four capitals: try shorter prefixes too.
    for (let count = groups.length; count >= 3 && matchedLength === 0; count--) {
      const iban = groups.slice(0, count).join('');
      if (iban.length >= 15 && iban.length <= 34 && passesIbanCheck(iban)) matchedLength = groups.slice(0, count).join(' ').length;
    }
    if (matchedLength > 0) {
      into.push({ start: m.index, end: m.index + matchedLength, detector: 'iban' });
      grouped.lastIndex = m.index + matchedLength;
    } else {
      grouped.lastIndex = m.index + 1;
    }
  }
}

/** ISO 13616 / ISO 7064 MOD 97-10: the country code and check digits moved to the end, letters as 10..35. */
function passesIbanCheck(iban: string): boolean {
  let remainder = 0;
  for (let i = 0; i < iban.length; i++) {
    const code = iban.charCodeAt((i + 4) % iban.length);
    remainder = code <= 0x39 ? (remainder * 10 + (code - 0x30)) % 97 : (remainder * 100 + (code - 0x41 + 10)) % 97;
  }
  return remainder === 1;
}

function findEmails(s: string, into: Match[]): void {
  for (let at = s.indexOf('@'); at !== -1; at = s.indexOf('@', at + 1)) {
    let start = at;
    while (start > 0 && isLocalPartChar(s.charCodeAt(start - 1))) start--;
    while (start < at && s.charCodeAt(start) === 0x2e) start++; // a dot-atom does not start with '.'
    if (start === at) continue;
    const end = domainEnd(s, at + 1);
    if (end !== -1) into.push({ start, end, detector: 'email' });
  }
}

/** Where the longest `label(.label)+` domain starting at `from` ends with a top-level label; -1 if none. */
function domainEnd(s: string, from: number): number {
  let end = -1;
  let labels = 0;
  let position = from;
  for (;;) {
    const labelStart = position;
    while (position < s.length && isLabelChar(s.charCodeAt(position))) position++;
    const length = position - labelStart;
    if (length === 0 || length > 63 || s.charCodeAt(labelStart) === 0x2d || s.charCodeAt(position - 1) === 0x2d) break;
    labels++;
    if (labels >= 2 && isTopLevelLabel(s, labelStart, position)) end = position;
    if (s.charCodeAt(position) !== 0x2e) break;
    position++;
  }
  return end;
}

function isTopLevelLabel(s: string, start: number, end: number): boolean {
  if (end - start < 2) return false;
  if (s.startsWith('xn--', start) && end - start > 4) return true;
  for (let i = start; i < end; i++) {
    const code = s.charCodeAt(i) | 0x20;
    if (code < 0x61 || code > 0x7a) return false;
  }
  return true;
}

/** RFC 5322 atext, and '.' between atoms. */
const LOCAL_PART_CHARS = new Uint8Array(128);
for (const char of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-.") LOCAL_PART_CHARS[char.charCodeAt(0)] = 1;

function isLocalPartChar(code: number): boolean {
  return code < 0x80 && LOCAL_PART_CHARS[code] === 1;
}

function isLabelChar(code: number): boolean {
  return isAlphanumeric(code) || code === 0x2d;
}

const FINDERS: Record<DetectorName, Finder> = {
  ssn: findSsns,
  card_number: findCardNumbers,
  iban: findIbans,
  email: findEmails,
};
