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
