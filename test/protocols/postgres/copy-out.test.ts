/**
 * COPY OUT rows rewritten by copy-out.ts: fields a transform leaves unchanged keep the bytes the
 * server wrote (escapes, quotes, the NULL string), changed ones are escaped or quoted as the
 * server would, in text, CSV and binary. (test/protocols/postgres/masking-engine.test.ts checks the
 * same against a real server's own output.)
 */
import { describe, expect, test } from 'vitest';
import { transformCopyData, type CopyLayout } from '../../../src/protocols/postgres/copy-out.js';
import type { Transforms } from '../../../src/protocols/postgres/transform.js';
import { KEEP, valueTransform } from '../../../src/protocols/value-sink.js';

const keep: Transforms[number] = () => KEEP;
const upper = valueTransform((v) => Buffer.from(v.toString('latin1').toUpperCase(), 'latin1'));
const withTab = valueTransform(() => Buffer.from('a\tb\\c'));
const toNull = valueTransform(() => null);
const body = (message: Buffer | null) => message?.subarray(5).toString('latin1') ?? null;

describe('text format', () => {
  const layout: CopyLayout = { format: 'text', delimiter: 0x09, null: Buffer.from('\\N'), header: false };
  const row = Buffer.from('1\tx\\ty\\\\z\t\\N\tplain\n', 'latin1');

  test('fields left unchanged come out as the server wrote them, escapes and NULL included', () => {
    expect(body(transformCopyData(row, 4, [keep, keep, keep, keep], layout))).toBe(row.toString('latin1'));
  });

  test('a changed field is escaped (tab, backslash); its neighbours keep their bytes', () => {
    expect(body(transformCopyData(row, 4, [null, keep, null, upper], layout))).toBe('1\tx\\ty\\\\z\t\\N\tPLAIN\n');
    expect(body(transformCopyData(row, 4, [withTab, null, null, toNull], layout))).toBe('a\\tb\\\\c\tx\\ty\\\\z\t\\N\t\\N\n');
  });

  test('a masked value equal to the NULL string gets an octal first byte', () => {
    const nil: CopyLayout = { format: 'text', delimiter: 0x2c, null: Buffer.from('NIL'), header: false };
    expect(body(transformCopyData(Buffer.from('nil,2\n'), 2, [upper, null], nil))).toBe('\\116IL,2\n');
  });
});

describe('CSV', () => {
  const layout: CopyLayout = { format: 'csv', delimiter: 0x2c, quote: 0x22, escape: 0x22, null: Buffer.alloc(0), header: false };
  const row = Buffer.from('1,"a ""q"", b",,plain\n', 'latin1');

  test('fields left unchanged keep their quoting', () => {
    expect(body(transformCopyData(row, 4, [keep, keep, keep, keep], layout))).toBe(row.toString('latin1'));
  });

  test('a changed field is quoted as the server would; the others keep their bytes', () => {
    expect(body(transformCopyData(row, 4, [upper, null, null, upper], layout))).toBe('1,"a ""q"", b",,PLAIN\n');
    expect(body(transformCopyData(row, 4, [null, upper, null, null], layout))).toBe('1,"A ""Q"", B",,plain\n');
    expect(body(transformCopyData(row, 4, [toNull, null, null, null], layout))).toBe(',"a ""q"", b",,plain\n');
  });
});

describe('binary', () => {
  const field = (v: Buffer | null) => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(v === null ? -1 : v.length);
    return v === null ? len : Buffer.concat([len, v]);
  };
  const tuple = (values: (Buffer | null)[]) => Buffer.concat([Buffer.from([0, values.length]), ...values.map(field)]);

  test('unchanged fields keep their bytes; changed ones get their new length', () => {
    const row = tuple([Buffer.from('one'), null, Buffer.from('three')]);
    expect(transformCopyData(row, 3, [keep, keep, keep], { format: 'binary' })!.subarray(5)).toEqual(row);
    expect(transformCopyData(row, 3, [null, null, upper], { format: 'binary' })!.subarray(5)).toEqual(tuple([Buffer.from('one'), null, Buffer.from('THREE')]));
    expect(transformCopyData(row, 3, [toNull, null, withTab], { format: 'binary' })!.subarray(5)).toEqual(tuple([null, null, Buffer.from('a\tb\\c')]));
  });
});

describe('text format, many rows against a reader written here', () => {
  /** PostgreSQL's text format read back (the COPY reference's rules), field by field; null for \N. */
  function readText(line: string): (string | null)[] {
    const fields: (string | null)[] = [];
    let value = '';
    let raw = '';
    const ESC: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };
    for (let i = 0; i < line.length; i++) {
      const c = line[i]!;
      if (c === '\t') {
        fields.push(raw === '\\N' ? null : value);
        value = '';
        raw = '';
        continue;
      }
      raw += c;
      if (c !== '\\') value += c;
      else {
        const e = line[++i]!;
        raw += e;
        if (/[0-7]/.test(e)) {
          let digits = e;
          while (digits.length < 3 && /[0-7]/.test(line[i + 1] ?? '')) digits += line[++i]!;
          raw += digits.slice(1);
          value += String.fromCharCode(parseInt(digits, 8));
        } else value += ESC[e] ?? e;
      }
    }
    fields.push(raw === '\\N' ? null : value);
    return fields;
  }
  const escape = (v: string | null) => (v === null ? '\\N' : v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r'));

  test('every changed value reads back as the transform made it, every other as the server wrote it', () => {
    let seed = 7; // mulberry32: every bit of it varies
    const random = (n: number) => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    const ALPHABET = ['a', 'Z', '9', ' ', '\t', '\\', '\n', '\r', 'N', '\u00e9'];
    const text = () => Array.from({ length: random(8) }, () => ALPHABET[random(ALPHABET.length)]).join('');
    const layout: CopyLayout = { format: 'text', delimiter: 0x09, null: Buffer.from('\\N'), header: false };
    for (let r = 0; r < 500; r++) {
      const values = Array.from({ length: 4 }, () => (random(6) === 0 ? null : text()));
      const replacements = Array.from({ length: 4 }, () => (random(2) === 0 ? undefined : random(5) === 0 ? null : text()));
      const transforms: Transforms = replacements.map((rep) => (rep === undefined ? keep : valueTransform(() => (rep === null ? null : Buffer.from(rep)))));
      const line = `${values.map(escape).join('\t')}\n`;
      const out = transformCopyData(Buffer.from(line), 4, transforms, layout);
      expect(out, line).not.toBeNull();
      expect(out![0]).toBe(0x64); // CopyData
      expect(out!.readInt32BE(1)).toBe(out!.length - 1);
      const written = out!.subarray(5).toString();
      expect(written.endsWith('\n')).toBe(true);
      expect(written.slice(0, -1)).not.toMatch(/[\n\r]/); // COPY writes them as \n and \r
      const expected = values.map((v, i) => (replacements[i] === undefined || v === null ? v : replacements[i]!));
      expect(readText(written.slice(0, -1)), JSON.stringify({ line, replacements })).toEqual(expected);
    }
  });
});
