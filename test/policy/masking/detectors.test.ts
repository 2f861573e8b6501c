import { describe, expect, it } from 'vitest';
import { createScrubber, type Scrubber } from '../../../src/policy/masking/detectors.js';
import { DETECTORS } from '../../../src/policy/masking/types.js';

const OID = { bytea: 17, int8: 20, int4: 23, text: 25, json: 114, bpchar: 1042, varchar: 1043, textArray: 1009, numeric: 1700, jsonb: 3802 } as const;
const all = createScrubber([...DETECTORS])!;
const scrub = (s: string, scrubber: Scrubber = all) => scrubber.text(s);

describe('createScrubber', () => {
  it('has nothing to do without detectors', () => {
    expect(createScrubber([])).toBeNull();
  });

  it('runs only the detectors configured', () => {
    const emails = createScrubber(['email'])!;
    expect(scrub('123-45-6789 a@b.io', emails)).toEqual({ text: '123-45-6789 *@*.**', hits: ['email'] });
    const ssns = createScrubber(['ssn'])!;
    expect(scrub('123-45-6789 a@b.io 4111111111111111', ssns)).toEqual({ text: '***-**-**** a@b.io 4111111111111111', hits: ['ssn'] });
  });
});

describe('ssn', () => {
  it('masks NNN-NN-NNNN in place, keeping the dashes', () => {
    expect(scrub('id 123-45-6789 x')).toEqual({ text: 'id ***-**-**** x', hits: ['ssn'] });
    expect(scrub('123-45-6789,000-00-0000')).toEqual({ text: '***-**-****,***-**-****', hits: ['ssn', 'ssn'] });
    expect(scrub('a123-45-6789b').text).toBe('a***-**-****b');
  });

  it('leaves other digit shapes alone', () => {
    for (const text of ['1123-45-6789', '123-45-67890', '123456789', '123 45 6789', '12-345-6789', '2024-01-15']) {
      expect(scrub(text), text).toEqual({ text, hits: [] });
    }
  });
});

describe('card_number', () => {
  it('masks 13-19 Luhn-valid digits, plain or grouped by single spaces or dashes', () => {
    expect(scrub('card 4111 1111 1111 1111 exp')).toEqual({ text: 'card **** **** **** **** exp', hits: ['card_number'] });
    expect(scrub('4111-1111-1111-1111').text).toBe('****-****-****-****');
    expect(scrub('4111111111111111').text).toBe('****************');
    expect(scrub('amex 378282246310005.').text).toBe('amex ***************.');
    expect(scrub('4222222222222').text).toBe('*************'); // 13 digits
    expect(scrub('6011000990139424').hits).toEqual(['card_number']);
  });

  it('finds a card beside other numbers in the same run of groups', () => {
    expect(scrub('ref 12 4111 1111 1111 1111').text).toBe('ref 12 **** **** **** ****');
    expect(scrub('4111 1111 1111 1111 12').text).toBe('**** **** **** **** 12');
  });

  it('leaves Luhn failures, runs longer than 19 digits, and doubled separators alone', () => {
    for (const text of ['4111111111111112', '41111111111111110000', '4111  1111  1111  1111', '411111111111']) {
      expect(scrub(text), text).toEqual({ text, hits: [] });
    }
    expect(scrub('1234567890123456').hits).toEqual([]); // fails Luhn
  });
});

describe('iban', () => {
  it('masks compact and grouped IBANs that pass mod-97', () => {
    expect(scrub('pay DE89370400440532013000 now')).toEqual({ text: 'pay ********************** now', hits: ['iban'] });
    expect(scrub('GB82 WEST 1234 5698 7654 32').text).toBe('**** **** **** **** **** **');
    expect(scrub('NL91ABNA0417164300').hits).toEqual(['iban']);
    expect(scrub('FR14 2004 1010 0505 0001 3M02 606').hits).toEqual(['iban']);
  });

  it('finds a grouped IBAN followed by a word, or preceded by a shape that fails', () => {
    expect(scrub('BE68 5390 0754 7034 OKAY').text).toBe('**** **** **** **** OKAY');
    expect(scrub('XY12 BE68 5390 0754 7034').text).toBe('XY12 **** **** **** ****');
  });

  it('leaves wrong checksums, lower case and glued text alone', () => {
    for (const text of ['DE89370400440532013001', 'de89370400440532013000', 'XDE89370400440532013000', 'GB82 WEST 1234 5698 7654 33']) {
      expect(scrub(text), text).toEqual({ text, hits: [] });
    }
  });
});

describe('email', () => {
  it('masks local@domain.tld, keeping the punctuation', () => {
    expect(scrub('mail alice.smith+x@mail.example.co.uk now')).toEqual({ text: 'mail *****.*****+*@****.*******.**.** now', hits: ['email'] });
    expect(scrub('<bob@example.com>.').text).toBe('<***@*******.***>.');
    expect(scrub('alice@example.com.').text).toBe('*****@*******.***.');
    expect(scrub('x@b.com.c').text).toBe('*@*.***.c');
    expect(scrub('.dot@xn--bcher-kva.xn--p1ai').text).toBe('.***@**--*****-***.**--****');
  });

  it('leaves addresses without a top-level label alone', () => {
    for (const text of ['a@b', 'user@localhost', 'a@b.c', 'x@1.2.3.4', '@example.com', 'a@-x.com', 'a@x-.com']) {
      expect(scrub(text), text).toEqual({ text, hits: [] });
    }
  });

  it('counts one hit when a card number is the local part of an email', () => {
    expect(scrub('4111111111111111@example.com')).toEqual({ text: '****************@*******.***', hits: ['email'] });
  });

  it('stays linear on hostile input', () => {
    const hostile = `${'a.'.repeat(200_000)}@${'b-'.repeat(200_000)}`;
    expect(scrub(hostile).hits).toEqual([]);
    const digits = `${'1 '.repeat(200_000)}`;
    expect(scrub(digits).text.length).toBe(digits.length);
  });
});

describe('Scrubber.text', () => {
  it('returns the same string when nothing matches', () => {
    const clean = 'nothing to see here, order #42 shipped 2024-01-05';
    expect(scrub(clean).text).toBe(clean);
    expect(scrub('no digits at all').hits).toEqual([]);
  });

  it('keeps the length and the non-ASCII characters of message texts', () => {
    const message = 'invalid input syntax for type integer: "123-45-6789" — für Zoë';
    expect(scrub(message).text).toBe('invalid input syntax for type integer: "***-**-****" — für Zoë');
  });
});

describe('Scrubber.value', () => {
  it('replaces a match in place in text-like values, text or binary format, leaving the input intact', () => {
    const input = Buffer.from('ssn 123-45-6789', 'latin1');
    for (const [format, oid] of [[0, OID.text], [1, OID.varchar], [1, OID.bpchar]] as const) {
      const result = all.value(input, format, oid)!;
      expect(result.value?.toString('latin1')).toBe('ssn ***-**-****');
      expect(result.hits).toEqual(['ssn']);
    }
    expect(input.toString()).toBe('ssn 123-45-6789');
  });

  it('keeps UTF-8 bytes around a match intact', () => {
    const result = all.value(Buffer.from('Zoë 123-45-6789 ✓', 'utf8'), 0, OID.text)!;
    expect(result.value!.toString('utf8')).toBe('Zoë ***-**-**** ✓');
  });

  it('answers null when nothing matched, so the caller forwards the original bytes', () => {
    expect(all.value(Buffer.from('plain text'), 0, OID.text)).toBeNull();
    expect(all.value(Buffer.from('order 42'), 0, OID.text)).toBeNull();
  });

  it('makes a hit in any other type SQL NULL', () => {
    expect(all.value(Buffer.from('{"ssn": "123-45-6789"}'), 0, OID.json)).toEqual({ value: null, hits: ['ssn'] });
    expect(all.value(Buffer.from('\x01{"e": "a@b.io"}', 'latin1'), 1, OID.jsonb)).toEqual({ value: null, hits: ['email'] });
    expect(all.value(Buffer.from('{123-45-6789,x}'), 0, OID.textArray)).toEqual({ value: null, hits: ['ssn'] });
  });

  it('scans binary arrays and other catalog-defined types as raw bytes', () => {
    const element = Buffer.from('123-45-6789');
    const header = Buffer.alloc(20);
    header.writeInt32BE(1, 0); header.writeInt32BE(0, 4); header.writeInt32BE(OID.text, 8); header.writeInt32BE(1, 12); header.writeInt32BE(1, 16);
    const length = Buffer.alloc(4);
    length.writeInt32BE(element.length);
    const array = Buffer.concat([header, length, element]);
    expect(all.value(array, 1, OID.textArray)).toEqual({ value: null, hits: ['ssn'] });
    expect(all.value(Buffer.from('a@b.io'), 1, 16_384 /* e.g. citext */)).toEqual({ value: null, hits: ['email'] });
  });

  it('never scans numbers, times and bytea, in either format: a long id that passes Luhn is not a card', () => {
    const card = Buffer.alloc(8);
    card.writeBigInt64BE(4111111111111111n);
    expect(all.value(card, 1, OID.int8)).toBeNull();
    expect(all.value(Buffer.from('4111111111111111'), 0, OID.int8)).toBeNull();
    expect(all.value(Buffer.from('4111111111111111'), 0, OID.numeric)).toBeNull();
    expect(all.value(Buffer.from('4111111111111111'), 1, OID.numeric)).toBeNull();
    expect(all.value(Buffer.from('123-45-6789'), 1, OID.bytea)).toBeNull();
    // The same digits as text are a card number.
    expect(all.value(Buffer.from('4111111111111111'), 0, OID.text)?.hits).toEqual(['card_number']);
  });
});

describe('the byte prefilter of values', () => {
  it('skips only detectors that cannot match: values come out as the text path masks them', () => {
    // text() runs every finder on anything with a digit or '@'; value() first counts the
    // characters each shape needs. Random strings rich in near-misses must agree.
    let seed = 3;
    const rand = (n: number) => Math.floor(((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000) * n);
    const pieces = ['1', '4', '0', '9', '-', ' ', '@', '.', 'a', 'x', 'GB', 'DE', 'Z', 'com', '4111 1111 1111 1111', '123-45-6789', 'GB82WEST12345698765432', 'u@ex.io', '12', '345'];
    for (const detectors of [[...DETECTORS], ['ssn'], ['card_number', 'email'], ['iban']] as const) {
      const scrubber = createScrubber([...detectors])!;
      for (let i = 0; i < 3_000; i++) {
        const s = Array.from({ length: rand(14) }, () => pieces[rand(pieces.length)]).join('');
        const byText = scrubber.text(s);
        const byValue = scrubber.value(Buffer.from(s, 'latin1'), 0, OID.text);
        expect(byValue === null ? { text: s, hits: [] } : { text: byValue.value!.toString('latin1'), hits: byValue.hits }).toEqual(byText);
      }
    }
  });
});

describe('the prefilter on digit-heavy values (its card state machine and shape checks)', () => {
  it('agrees with the text path on stretches of 12 and 13 digits, single and doubled separators, and SSN and IBAN near-misses', () => {
    let seed = 17;
    const rand = (n: number) => Math.floor(((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000) * n);
    const pieces = ['0', '4', '7', '9', '1', '-', ' ', '  ', '--', 'a', 'f', 'GB', 'X', '4111', '411111', '123-45-', '-6789', '12-', 'DE8', '9 ', '@', 'b.io', '\n'];
    for (const detectors of [[...DETECTORS], ['card_number'], ['ssn'], ['iban']] as const) {
      const scrubber = createScrubber([...detectors])!;
      for (let i = 0; i < 4_000; i++) {
        const s = Array.from({ length: 4 + rand(24) }, () => pieces[rand(pieces.length)]).join('');
        const byText = scrubber.text(s);
        const byValue = scrubber.valueAt(Buffer.from(`xx${s}yy`, 'latin1'), 2, 2 + s.length, 0, OID.text);
        expect(byValue === null ? { text: s, hits: [] } : { text: byValue.value!.toString('latin1'), hits: byValue.hits }, s).toEqual(byText);
      }
    }
  });

  it('passes md5 hex over without a finder, and still finds a card, an SSN or an IBAN at either end of a value', () => {
    const hex = 'c4ca4238a0b923820dcc509a6f75849b c81e728d9d4c2f636f067f89cc14862c';
    expect(all.value(Buffer.from(`order 1 shipped to warehouse 1: ${hex}`), 0, OID.text)).toBeNull();
    expect(all.value(Buffer.from(`4111111111111111 ${hex}`), 0, OID.text)?.hits).toEqual(['card_number']);
    expect(all.value(Buffer.from(`${hex} 4111-1111-1111-1111`), 0, OID.text)?.hits).toEqual(['card_number']);
    expect(all.value(Buffer.from(`${hex} 123-45-6789`), 0, OID.text)?.hits).toEqual(['ssn']);
    expect(all.value(Buffer.from(`GB82WEST12345698765432 ${hex}`), 0, OID.text)?.hits).toEqual(['iban']);
    expect(all.value(Buffer.from('123456789012 3'), 0, OID.text)).toBeNull(); // 13 digits in one stretch, failing Luhn
    expect(all.value(Buffer.from('4222222222222'), 0, OID.text)?.hits).toEqual(['card_number']);
  });
});
