/**
 * DataRow rewriting (transform.ts): the one-allocation rewrite against a plain reference (every
 * field sliced, transformed and joined), on random rows and transforms; null when nothing changed.
 */
import { describe, expect, test } from 'vitest';
import { MessageType } from '../../../src/protocols/postgres/messages.js';
import { transformDataRow, type Transforms } from '../../../src/protocols/postgres/transform.js';

function body(values: (Buffer | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from([values.length >> 8, values.length & 0xff])];
  for (const v of values) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(v === null ? -1 : v.length);
    parts.push(len);
    if (v !== null) parts.push(v);
  }
  return Buffer.concat(parts);
}

/** What a DataRow of `values` looks like as a whole message. */
function message(values: (Buffer | null)[]): Buffer {
  const b = body(values);
  const head = Buffer.alloc(5);
  head[0] = MessageType.DataRow;
  head.writeInt32BE(4 + b.length, 1);
  return Buffer.concat([head, b]);
}

const same = (v: Buffer) => v;
const upper = (v: Buffer) => Buffer.from(v.toString('latin1').toUpperCase(), 'latin1');
const toNull = () => null;
const longer = (v: Buffer) => Buffer.concat([v, Buffer.from('++++')]);
const empty = () => Buffer.alloc(0);

describe('transformDataRow', () => {
  test('null when no transform changed a value; the formats reach the transforms', () => {
    const row = body([Buffer.from('a'), null, Buffer.from('bc')]);
    const seen: number[] = [];
    expect(transformDataRow(row, [(v, f) => (seen.push(f), v), same, null], [0, 1, 1])).toBeNull();
    expect(seen).toEqual([0]); // NULL values are never given to a transform
    expect(transformDataRow(row, [], [])).toBeNull();
  });

  test('replaced values of other lengths, NULLs both ways, unchanged runs copied', () => {
    const values = [Buffer.from('id1'), Buffer.from('123-45-6789'), null, Buffer.from(''), Buffer.from('tail')];
    const transforms: Transforms = [null, () => Buffer.from('****'), null, longer, toNull];
    expect(transformDataRow(body(values), transforms, [0])).toEqual(message([values[0]!, Buffer.from('****'), null, Buffer.from('++++'), null]));
  });

  test('random rows: the same bytes as slicing, transforming and joining every field', () => {
    let seed = 11;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const kinds = [null, same, upper, toNull, longer, empty];
    for (let i = 0; i < 2_000; i++) {
      const n = Math.floor(rand() * 20);
      const values = Array.from({ length: n }, () => (rand() < 0.15 ? null : Buffer.from('x'.repeat(Math.floor(rand() * 40)).replace(/x/g, () => String.fromCharCode(97 + Math.floor(rand() * 26))))));
      const transforms: Transforms = Array.from({ length: Math.floor(rand() * (n + 2)) }, () => kinds[Math.floor(rand() * kinds.length)]!);
      const expected = values.map((v, k) => (v === null || !transforms[k] ? v : transforms[k]!(v, 0)));
      const out = transformDataRow(body(values), transforms, [0]);
      if (expected.every((v, k) => v === values[k])) expect(out).toBeNull();
      else expect(out).toEqual(message(expected));
    }
  });
});
