/**
 * COPY OUT rows rewritten by copy-out.ts: fields a transform leaves unchanged keep the bytes the
 * server wrote (escapes, quotes, the NULL string), changed ones are escaped or quoted as the
 * server would, in text, CSV and binary. (test/protocols/postgres/masking-engine.test.ts checks the
 * same against a real server's own output.)
 */
import { describe, expect, test } from 'vitest';
import { splitText, transformCopyData, type CopyLayout } from '../../../src/protocols/postgres/copy-out.js';
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

describe('splitting text-format rows a word at a time', () => {
  // Bytes that matter to the split, bytes that trip the word test's false flags (0x01 above a
  // match, 0x80 and up), and plain ones.
  const ALPHABET = [0x5c, 0x5c, 0x09, 0x09, 0x2c, 0x7c, 0x0a, 0x0d, 0x0c, 0x0e, 0x0f, 0x01, 0x00, 0x80, 0xff, 0x5b, 0x5d, 0x0b, 0x08, 0x61, 0x62, 0x31, 0x20];
  /** The fields as reading byte by byte finds them (start, end, whether escaped), or null. */
  const byBytes = (line: Buffer, length: number, delimiter: number, columns: number): number[] | null => {
    const bounds: number[] = [];
    let start = 0;
    let escaped = 0;
    for (let i = 0; i < length; i++) {
      const c = line[i]!;
      if (c === 0x5c) {
        if (++i >= length) return null;
        escaped = 1;
      } else if (c === delimiter) {
        bounds.push(start, i, escaped);
        start = i + 1;
        escaped = 0;
      } else if (c === 0x0a || c === 0x0d) return null;
    }
    bounds.push(start, length, escaped);
    return bounds.length === 3 * columns ? bounds : null;
  };
  /** splitText's fields of the row at memory[from, to), as offsets from `from`. */
  const split = (memory: Buffer, from: number, to: number, delimiter: number, columns: number) => {
    const bounds = splitText(memory, from, to, delimiter, columns);
    return bounds === null ? null : Array.from(bounds.subarray(0, 3 * columns), (v, i) => (i % 3 === 2 ? v : v - from));
  };

  test('finds the same fields as reading byte by byte, at every alignment, or refuses the same rows', () => {
    let seed = 7;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    let accepted = 0;
    for (let run = 0; run < 20_000; run++) {
      const delimiter = [0x09, 0x2c, 0x7c, 0x01, 0x0d + 1, 0x5d][random(6)]!;
      const columns = 1 + random(6);
      // Mostly well-formed rows: fields of plain bytes and escapes; sometimes a byte from anywhere.
      const bytes: number[] = [];
      for (let c = 0; c < columns; c++) {
        if (c > 0) bytes.push(delimiter);
        for (let n = random(12); n > 0; n--) {
          const r = random(10);
          if (r < 6) bytes.push(0x61 + random(26));
          else if (r < 8) bytes.push(0x5c, ALPHABET[random(ALPHABET.length)]!);
          else bytes.push(ALPHABET[random(ALPHABET.length)]!);
        }
      }
      if (random(8) === 0) bytes.splice(random(bytes.length + 1), 0, ALPHABET[random(ALPHABET.length)]!);
      // The line at a random offset of a larger buffer, LF-terminated, bytes after it that matter too.
      const offset = random(8);
      const memory = Buffer.alloc(offset + bytes.length + 1 + random(8), 0x5c);
      Buffer.from(bytes).copy(memory, offset);
      memory[offset + bytes.length] = 0x0a;
      const line = memory.subarray(offset, offset + bytes.length + 1);
      const expected = byBytes(line, line.length - 1, delimiter, columns);
      expect(split(memory, offset, offset + bytes.length, delimiter, columns)).toEqual(expected);
      if (expected !== null) accepted++;
    }
    expect(accepted).toBeGreaterThan(5_000); // most rows parse: the fields themselves were compared
  });
});
