import { describe, expect, it } from 'vitest';
import { columnMasker, isTextLike } from '../../../src/policy/masking/methods.js';
import { drawnLike } from '../../../src/policy/masking/hash-mask.js';
import type { MaskMethod, MaskRule } from '../../../src/policy/masking/types.js';
import { referenceIntegerToken, referenceToken } from '../../helpers/hash-token.js';

const OID = { name: 19, int8: 20, int2: 21, int4: 23, text: 25, unknown: 705, bpchar: 1042, varchar: 1043, numeric: 1700, date: 1082 } as const;
const TEXT_LIKE = [OID.text, OID.varchar, OID.bpchar, OID.name, OID.unknown];
const KEY = Buffer.from('0123456789abcdef0123456789abcdef');
const TEXT = 0;
const BINARY = 1;

const rule = (method: MaskMethod, keep?: number): MaskRule => ({ column: 'public.customers.ssn', type: 'ssn', method, ...(keep === undefined ? {} : { keep }) });
const masked = (method: MaskMethod, value: string, typeOid: number = OID.text, options: { keep?: number; format?: number; key?: Buffer } = {}) =>
  columnMasker(rule(method, options.keep), typeOid, false, options.key ?? KEY).mask(Buffer.from(value, 'latin1'), options.format ?? TEXT)?.toString('latin1') ?? null;

describe('isTextLike', () => {
  it('is true for text, varchar, bpchar, name and unknown only', () => {
    expect(TEXT_LIKE.every(isTextLike)).toBe(true);
    expect([0, 18, OID.int4, OID.numeric, 114, 3802, 1009].some(isTextLike)).toBe(false);
  });
});

describe('redact', () => {
  it('is one fixed "****" for every text-like type, in both formats, whatever the value', () => {
    const masker = columnMasker(rule('redact'), OID.varchar, false, KEY);
    expect(masker.method).toBe('redact');
    expect(masker.note).toBeNull();
    const first = masker.mask(Buffer.from('123-45-6789'), TEXT);
    expect(first?.toString()).toBe('****');
    expect(masker.mask(Buffer.from('x'), BINARY)).toBe(first); // the shared constant
    for (const oid of TEXT_LIKE) expect(masked('redact', 'a value', oid)).toBe('****');
  });
});

describe('partial', () => {
  it('keeps the last 4 characters by default and masks other letters and digits, keeping separators', () => {
    expect(masked('partial', '123-45-6789')).toBe('***-**-6789');
    expect(masked('partial', 'AB-cd-1234')).toBe('**-**-1234');
    expect(masked('partial', 'alice@example.com')).toBe('*****@*******.com');
    expect(masked('partial', '123-45-6789', OID.varchar, { format: BINARY })).toBe('***-**-6789');
  });

  it('keeps the configured count, and masks a value no longer than it whole', () => {
    expect(masked('partial', '123-45-6789', OID.text, { keep: 2 })).toBe('***-**-**89');
    expect(masked('partial', '123-45-6789', OID.text, { keep: 0 })).toBe('***-**-****');
    expect(masked('partial', '1234', OID.text, { keep: 4 })).toBe('****');
    expect(masked('partial', '12', OID.text, { keep: 4 })).toBe('**');
    expect(masked('partial', '', OID.text)).toBe('');
  });

  it('keeps nothing when keep is not a non-negative integer', () => {
    expect(masked('partial', '123456789', OID.text, { keep: -1 })).toBe('*********');
    expect(masked('partial', '123456789', OID.text, { keep: 2.5 })).toBe('*********');
  });

  it('keeps a bpchar padding as spaces and takes the kept characters before it', () => {
    expect(masked('partial', '123-45-6789    ', OID.bpchar)).toBe('***-**-6789    ');
    expect(masked('partial', '123-45-6789    ', OID.text)).toBe('***-**-****    '); // in text, the spaces are data
  });

  it('falls back to "****" for a value with a non-ASCII byte', () => {
    const utf8 = Buffer.from('Zoë 123-45-6789', 'utf8');
    expect(columnMasker(rule('partial'), OID.text, false, KEY).mask(utf8, TEXT)?.toString()).toBe('****');
  });
});

describe('hash (text-like)', () => {
  it('is the keyed stream of the value bytes (AES-256-CMAC) turned into a token of the same shape', () => {
    for (const value of ['123-45-6789', 'Alice.Smith@example.com', 'AcCt-0042', '', '---']) {
      expect(masked('hash', value)).toBe(referenceToken(KEY, value));
    }
    const token = masked('hash', '123-45-6789')!;
    expect(token).toMatch(/^[0-9]{3}-[0-9]{2}-[0-9]{4}$/);
    expect(token).not.toBe('123-45-6789');
  });

  it('stretches the MAC for values of more than 8 letters and digits', () => {
    const long = 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0-' + 'x'.repeat(100);
    const token = masked('hash', long)!;
    expect(token).toBe(referenceToken(KEY, long));
    expect(token.replace(/[A-Z]/g, 'U').replace(/[a-z]/g, 'l').replace(/[0-9]/g, 'd'))
      .toBe(long.replace(/[A-Z]/g, 'U').replace(/[a-z]/g, 'l').replace(/[0-9]/g, 'd'));
    expect(new Set(token.slice(41)).size).toBeGreaterThan(5); // the stretched part is not one repeated letter
  });

  it('long values (drawn from their stream a window at a time) get the reference token, padding aside', () => {
    for (const length of [65, 4096, 300_000]) {
      const value = Array.from({ length }, (_, i) => 'aZ9-'[i % 4]).join('');
      expect(masked('hash', value), `length ${length}`).toBe(referenceToken(KEY, value));
      expect(masked('hash', `${value}   `, OID.bpchar)).toBe(`${referenceToken(KEY, value)}   `);
    }
    expect(columnMasker(rule('hash'), OID.text, false, KEY).mask(Buffer.from(`${'a'.repeat(100)}é`, 'utf8'), TEXT)?.toString()).toBe('****');
  });

  it('gives one value one token in every text-like column, padding aside; another key gives another', () => {
    const token = masked('hash', '123-45-6789');
    for (const oid of TEXT_LIKE) expect(masked('hash', '123-45-6789', oid, { format: BINARY })).toBe(token);
    expect(masked('hash', '123-45-6789  ', OID.bpchar)).toBe(`${token}  `);
    expect(masked('hash', '123-45-6789', OID.text, { key: Buffer.from('another key') })).not.toBe(token);
    expect(masked('hash', '123-45-6780')).not.toBe(token);
  });

  it('falls back to "****" for a value with a non-ASCII byte', () => {
    expect(columnMasker(rule('hash'), OID.varchar, false, KEY).mask(Buffer.from('café', 'utf8'), TEXT)?.toString()).toBe('****');
  });
});

describe('token characters', () => {
  it('are draw % 10 for a digit and draw % 26 for a letter of its case, for every 16-bit draw', () => {
    for (let draw = 0; draw < 0x10000; draw++) {
      if (drawnLike(0x35, draw) !== 0x30 + (draw % 10) || drawnLike(0x71, draw) !== 0x61 + (draw % 26) || drawnLike(0x51, draw) !== 0x41 + (draw % 26)) {
        expect.fail(`draw ${draw}`);
      }
    }
  });
});

describe('hash (integers)', () => {
  const RANGES = [[OID.int2, 2, 0x7fffn], [OID.int4, 4, 0x7fffffffn], [OID.int8, 8, 0x7fffffffffffffffn]] as const;
  const binary = (width: number, value: bigint) => {
    const out = Buffer.alloc(width);
    if (width === 2) out.writeInt16BE(Number(value));
    else if (width === 4) out.writeInt32BE(Number(value));
    else out.writeBigInt64BE(value);
    return out;
  };
  const readBinary = (width: number, bytes: Buffer) => width === 2 ? BigInt(bytes.readInt16BE()) : width === 4 ? BigInt(bytes.readInt32BE()) : bytes.readBigInt64BE();

  it('gives a keyed value of the type\'s full decimal width, the same in text and binary formats', () => {
    for (const [oid, width, max] of RANGES) {
      const masker = columnMasker(rule('hash'), oid, false, KEY);
      expect(masker.method).toBe('hash');
      const digits = { 2: 5, 4: 10, 8: 19 }[width];
      for (const value of [0n, 1n, -1n, 42n, -max - 1n, max]) {
        const text = masker.mask(Buffer.from(value.toString()), TEXT)!;
        const fromBinary = masker.mask(binary(width, value), BINARY)!;
        expect(fromBinary.length).toBe(width);
        const hashed = BigInt(text.toString());
        expect(text.toString()).toMatch(new RegExp(`^1[0-9]{${digits - 1}}$`));
        expect(hashed <= max, `${oid} ${value}`).toBe(true);
        expect(hashed).toBe(referenceIntegerToken(KEY, value.toString(), width));
        expect(readBinary(width, fromBinary)).toBe(hashed);
      }
      const a = masker.mask(Buffer.from('42'), TEXT)!.toString();
      expect(masker.mask(Buffer.from('43'), TEXT)!.toString()).not.toBe(a);
      expect(columnMasker(rule('hash'), oid, false, Buffer.from('other')).mask(Buffer.from('42'), TEXT)!.toString()).not.toBe(a);
    }
  });

  it('MACs the canonical decimal text', () => {
    const expected = referenceIntegerToken(KEY, '-9223372036854775808', 8);
    const masker = columnMasker(rule('hash'), OID.int8, false, KEY);
    expect(masker.mask(binary(8, -(2n ** 63n)), BINARY)!.readBigInt64BE()).toBe(expected);
  });

  it('writes the binary form of int8 tokens exactly (no rounding past 2^53)', () => {
    const masker = columnMasker(rule('hash'), OID.int8, false, KEY);
    for (let i = 0; i < 500; i++) {
      const value = BigInt(i * 7919 - 1_000_000) * 12_345_678_901n;
      const text = masker.mask(Buffer.from(value.toString()), TEXT)!.toString();
      expect(masker.mask(binary(8, value), BINARY)!.readBigInt64BE().toString()).toBe(text);
    }
  });

  it('still answers a valid integer for a binary value of the wrong width', () => {
    const out = columnMasker(rule('hash'), OID.int4, false, KEY).mask(Buffer.from([1, 2]), BINARY)!;
    expect(out.length).toBe(4);
    expect(out.readInt32BE()).toBeGreaterThanOrEqual(0);
  });
});

describe('what a type cannot hold, derived values and unknown taint', () => {
  it('answers SQL NULL where the type cannot hold the mask, and says why', () => {
    const cases: [MaskMethod, number, string][] = [
      ['partial', OID.int2, 'null: smallint cannot hold a text mask'],
      ['redact', OID.int4, 'null: integer cannot hold a text mask'],
      ['hash', OID.numeric, 'null: numeric cannot hold a hash token'],
      ['hash', OID.date, 'null: date cannot hold a hash token'],
      ['redact', 0, 'null: a result of unknown type cannot hold a text mask'],
      ['redact', 99999, 'null: type 99999 cannot hold a text mask'],
    ];
    for (const [method, oid, note] of cases) {
      const masker = columnMasker(rule(method), oid, false, KEY);
      expect([masker.method, masker.note]).toEqual(['null', note]);
      expect(masker.mask(Buffer.from('12'), TEXT)).toBeNull();
      expect(masker.mask(Buffer.from([0, 12]), BINARY)).toBeNull();
    }
  });

  it('applies the null method to every type', () => {
    for (const oid of [...TEXT_LIKE, OID.int4, OID.int8, OID.numeric, 0]) {
      const masker = columnMasker(rule('null'), oid, false, KEY);
      expect([masker.method, masker.note, masker.mask(Buffer.from('1'), TEXT)]).toEqual(['null', null, null]);
    }
  });

  it('turns partial and hash of a derived value into redact (or null where the type cannot hold text)', () => {
    for (const method of ['partial', 'hash'] as const) {
      const masker = columnMasker(rule(method), OID.text, true, KEY);
      expect(masker.method).toBe('redact');
      expect(masker.note).toBe(`redact: ${method} applies to a column's own value, not to an expression over it`);
      expect(masker.mask(Buffer.from('9876-54-321'), TEXT)?.toString()).toBe('****');
    }
    const integer = columnMasker(rule('hash'), OID.int8, true, KEY);
    expect(integer.method).toBe('null');
    expect(integer.note).toContain('null: bigint cannot hold a text mask');
    expect(columnMasker(rule('null'), OID.text, true, KEY).method).toBe('null');
  });

  it('redacts text-like columns of unknown taint and nulls the rest', () => {
    expect(columnMasker(null, OID.text, false, KEY).mask(Buffer.from('x'), TEXT)?.toString()).toBe('****');
    expect(columnMasker(null, OID.text, false, KEY).note).toBeNull();
    const integer = columnMasker(null, OID.int4, false, KEY);
    expect([integer.method, integer.note, integer.mask(Buffer.from('1'), TEXT)]).toEqual(['null', 'null: integer cannot hold a text mask', null]);
  });
});
