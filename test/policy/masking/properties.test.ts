/**
 * Property tests over seeded random values: whatever shape a protected value takes, the column
 * masks never emit it, and the scrubber never lets one through nor touches text that holds none.
 */
import { describe, expect, it } from 'vitest';
import { createScrubber } from '../../../src/policy/masking/detectors.js';
import { columnMasker } from '../../../src/policy/masking/methods.js';
import { DETECTORS, type MaskRule } from '../../../src/policy/masking/types.js';
import { group, ibanComplete, luhnComplete, prng, type Random } from './random.js';

const DIGITS = '0123456789';
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const LOWER = 'abcdefghijklmnopqrstuvwxyz';

const SHAPES = {
  ssn: (r: Random) => `${r.chars(DIGITS, 3)}-${r.chars(DIGITS, 2)}-${r.chars(DIGITS, 4)}`,
  card_number: (r: Random) => {
    const card = luhnComplete(r.pick('3456') + r.chars(DIGITS, r.int(12, 18) - 1));
    return r.pick([card, group(card, 4, ' '), group(card, 4, '-')]);
  },
  iban: (r: Random) => {
    const iban = ibanComplete(r.chars(UPPER, 2), r.chars(UPPER + DIGITS + DIGITS, r.int(11, 30)));
    return r.next() < 0.5 ? iban : group(iban, 4, ' ');
  },
  email: (r: Random) =>
    `${r.chars(LOWER + DIGITS, r.int(1, 10))}${r.next() < 0.3 ? `.${r.chars(LOWER, r.int(1, 6))}` : ''}@${r.chars(LOWER, r.int(1, 10))}.${r.pick(['com', 'org', 'co.uk', 'io', 'bank'])}`,
} as const;
type Shape = keyof typeof SHAPES;
const accountNumber = (r: Random) => r.pick([r.chars(DIGITS, r.int(6, 14)), `ACC-${r.chars(DIGITS, 4)}-${r.chars(UPPER + DIGITS, 6)}`, `${r.chars(UPPER, 2)}${r.chars(DIGITS, 10)}`]);
const protectedValue = (r: Random) => (r.next() < 0.2 ? accountNumber(r) : SHAPES[r.pick(Object.keys(SHAPES) as Shape[])](r));

const KEY = Buffer.from('property test key');
const TEXT_OIDS = [25, 1043, 1042] as const;
const rule = (method: MaskRule['method'], keep?: number): MaskRule => ({ column: 'public.t.c', type: 'other', method, ...(keep === undefined ? {} : { keep }) });
const isAlphanumeric = (c: string) => /[A-Za-z0-9]/.test(c);
const shapeOf = (s: string) => s.replace(/[A-Z]/g, 'U').replace(/[a-z]/g, 'l').replace(/[0-9]/g, 'd');

describe('column masks over random protected values', () => {
  it('partial shows at most the kept suffix, never the value', () => {
    const r = prng(7);
    for (let n = 0; n < 3000; n++) {
      const value = protectedValue(r);
      const keep = r.int(0, 6);
      const oid = r.pick(TEXT_OIDS);
      const padding = oid === 1042 ? ' '.repeat(r.int(0, 3)) : '';
      const out = columnMasker(rule('partial', keep), oid, false, KEY).mask(Buffer.from(value + padding), r.int(0, 1))!.toString();
      expect(out.length).toBe(value.length + padding.length);
      expect(out.includes(value), `${value} -> ${out}`).toBe(false);
      let shown = 0;
      let faithful = true; // every character is the original, or '*' over a letter or digit, and '*' before the kept suffix
      for (let i = 0; i < value.length; i++) {
        const original = value[i]!;
        if (out[i] === original && isAlphanumeric(original)) shown++;
        if (out[i] !== original && !(out[i] === '*' && isAlphanumeric(original))) faithful = false;
        if (i < value.length - keep && isAlphanumeric(original) && out[i] !== '*') faithful = false;
      }
      expect(faithful, `${value} keep ${keep} -> ${out}`).toBe(true);
      expect(shown).toBeLessThanOrEqual(keep);
      expect(out.slice(value.length)).toBe(padding);
    }
  });

  it('hash keeps shape and length, is stable across columns and formats, and does not collide in practice', () => {
    const r = prng(11);
    const tokens = new Map<string, string>();
    const hashers = TEXT_OIDS.map((oid) => columnMasker(rule('hash'), oid, false, KEY));
    for (let n = 0; n < 3000; n++) {
      const value = protectedValue(r);
      const token = hashers[0]!.mask(Buffer.from(value), 0)!.toString();
      expect(token.length).toBe(value.length);
      expect(shapeOf(token)).toBe(shapeOf(value));
      expect(token.includes(value), `${value} -> ${token}`).toBe(false);
      expect(hashers[1]!.mask(Buffer.from(value), 1)!.toString()).toBe(token);
      expect(hashers[2]!.mask(Buffer.from(`${value}   `), 0)!.toString()).toBe(`${token}   `);
      const earlier = tokens.get(token);
      if (earlier !== undefined) expect(earlier).toBe(value);
      tokens.set(token, value);
    }
  });

  it('integer hashes round-trip to valid integers in range in text and binary formats', () => {
    const r = prng(13);
    const widths = [[21, 2, 15], [23, 4, 31], [20, 8, 63]] as const;
    for (let n = 0; n < 3000; n++) {
      const [oid, width, bits] = r.pick(widths);
      const max = (1n << BigInt(bits)) - 1n;
      let value = 0n;
      for (let i = 0; i < width; i++) value = (value << 8n) | BigInt(r.int(0, 255));
      value = BigInt.asIntN(width * 8, value);
      const binary = Buffer.alloc(width);
      if (width === 2) binary.writeInt16BE(Number(value)); else if (width === 4) binary.writeInt32BE(Number(value)); else binary.writeBigInt64BE(value);
      const masker = columnMasker(rule('hash'), oid, false, KEY);
      const fromText = BigInt(masker.mask(Buffer.from(value.toString()), 0)!.toString());
      const out = masker.mask(binary, 1)!;
      const fromBinary = width === 2 ? BigInt(out.readInt16BE()) : width === 4 ? BigInt(out.readInt32BE()) : out.readBigInt64BE();
      expect(fromBinary).toBe(fromText);
      expect(fromText >= 0n && fromText <= max).toBe(true);
    }
  });
});

describe('the scrubber over random rows', () => {
  const scrubber = createScrubber([...DETECTORS])!;
  const NOISE = [
    (r: Random) => r.chars(LOWER, r.int(1, 8)),
    (r: Random) => r.chars(UPPER, 1) + r.chars(LOWER, r.int(1, 7)),
    (r: Random) => r.chars(UPPER + DIGITS, r.int(1, 4)),
    (r: Random) => r.chars(UPPER, 2) + r.chars(DIGITS, 2), // the head of an IBAN shape that fails its check
    (r: Random) => r.pick(['(x)', '—', 'für', 'Zoë', '#', '...', '"', "l'été"]),
  ];
  const SEPARATORS = [' ', ', ', '; ', ' / ', ' - '];
  /** Words and short numbers, never two numbers a single space apart (that could make a 13-digit Luhn run). */
  function noise(r: Random, words: number): string {
    const parts: string[] = [];
    for (let i = 0; i < words; i++) {
      const number = r.next() < 0.3 && !/[0-9]$/.test(parts.at(-1) ?? '');
      parts.push(number ? r.chars(DIGITS, r.int(1, 6)) : r.pick(NOISE)(r));
      parts.push(r.pick(SEPARATORS));
    }
    return parts.join('');
  }

  it('never emits a protected value mixed into text', () => {
    const r = prng(17);
    for (let n = 0; n < 3000; n++) {
      const secrets = Array.from({ length: r.int(1, 3) }, () => SHAPES[r.pick(Object.keys(SHAPES) as Shape[])](r));
      const row = secrets.map((secret) => `${noise(r, r.int(0, 4))}${secret} `).join('') + noise(r, r.int(0, 3));
      const { text, hits } = scrubber.text(row);
      expect(text.length).toBe(row.length);
      for (const secret of secrets) expect(text.includes(secret), `${secret} in ${row} -> ${text}`).toBe(false);
      expect(hits.length).toBeGreaterThanOrEqual(1);
      const bytes = scrubber.value(Buffer.from(row, 'utf8'), 0, 25)!;
      expect(bytes.value!.toString('utf8')).toBe(text);
    }
  });

  it('leaves text without a protected shape byte-identical', () => {
    const r = prng(19);
    for (let n = 0; n < 3000; n++) {
      const row = noise(r, r.int(0, 12));
      expect(scrubber.text(row)).toEqual({ text: row, hits: [] });
      expect(scrubber.value(Buffer.from(row, 'utf8'), r.int(0, 1), r.pick([25, 1043, 1042]))).toBeNull();
    }
  });
});
