/**
 * DataRow rewriting (transform.ts): the one-allocation rewrite against a plain reference (every
 * field sliced, transformed and joined), on random rows and transforms; null when nothing changed.
 * RowRewriter on rows inside a larger chunk, written at an offset of another buffer; the value
 * sink and the whole-value adapters (value-sink.ts).
 */
import { describe, expect, test } from 'vitest';
import { MessageType } from '../../../src/protocols/postgres/messages.js';
import { RowRewriter, transformDataRow, type Transforms } from '../../../src/protocols/postgres/transform.js';
import { applyTransform, KEEP, SQL_NULL, ValueSink, valueTransform } from '../../../src/protocols/value-sink.js';
import { columnMasker } from '../../../src/policy/masking/methods.js';

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

type ValueFn = (v: Buffer, format: number) => Buffer | null;
const sameFn: ValueFn = (v) => v;
const upperFn: ValueFn = (v) => Buffer.from(v.toString('latin1').toUpperCase(), 'latin1');
const toNullFn: ValueFn = () => null;
const longerFn: ValueFn = (v) => Buffer.concat([v, Buffer.from('++++')]);
const emptyFn: ValueFn = () => Buffer.alloc(0);
const [same, upper, toNull, longer] = [sameFn, upperFn, toNullFn, longerFn].map(valueTransform) as [Transforms[number], Transforms[number], Transforms[number], Transforms[number]];

describe('transformDataRow', () => {
  test('null when no transform changed a value; the formats reach the transforms', () => {
    const row = body([Buffer.from('a'), null, Buffer.from('bc')]);
    const seen: number[] = [];
    expect(transformDataRow(row, [valueTransform((v, f) => (seen.push(f), v)), same, null], [0, 1, 1])).toBeNull();
    expect(seen).toEqual([0]); // NULL values are never given to a transform
    expect(transformDataRow(row, [], [])).toBeNull();
  });

  test('replaced values of other lengths, NULLs both ways, unchanged runs copied', () => {
    const values = [Buffer.from('id1'), Buffer.from('123-45-6789'), null, Buffer.from(''), Buffer.from('tail')];
    const transforms: Transforms = [null, valueTransform(() => Buffer.from('****')), null, longer, toNull];
    expect(transformDataRow(body(values), transforms, [0])).toEqual(message([values[0]!, Buffer.from('****'), null, Buffer.from('++++'), null]));
  });

  test('random rows: the same bytes as slicing, transforming and joining every field', () => {
    let seed = 11;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const kinds = [null, sameFn, upperFn, toNullFn, longerFn, emptyFn];
    for (let i = 0; i < 2_000; i++) {
      const n = Math.floor(rand() * 20);
      const values = Array.from({ length: n }, () => (rand() < 0.15 ? null : Buffer.from('x'.repeat(Math.floor(rand() * 40)).replace(/x/g, () => String.fromCharCode(97 + Math.floor(rand() * 26))))));
      const fns = Array.from({ length: Math.floor(rand() * (n + 2)) }, () => kinds[Math.floor(rand() * kinds.length)]!);
      const transforms: Transforms = fns.map((fn) => (fn === null ? null : valueTransform(fn)));
      const expected = values.map((v, k) => (v === null || !fns[k] ? v : fns[k]!(v, 0)));
      const out = transformDataRow(body(values), transforms, [0]);
      if (expected.every((v, k) => v === values[k])) expect(out).toBeNull();
      else expect(out).toEqual(message(expected));
    }
  });
});

describe('RowRewriter', () => {
  test('rows inside a chunk, written at an offset of another buffer: the bytes transformDataRow gives, nothing around them touched', () => {
    let seed = 5;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const rewriter = new RowRewriter();
    // Replacements written straight into the sink, at its current offset, of every length class.
    const star: Transforms[number] = (row, start, end, _format, sink) => {
      const out = sink.reserve(end - start);
      for (let i = 0; i < end - start; i++) out[sink.at + i] = row[start + i] === 0x20 ? 0x20 : 0x2a;
      return end - start;
    };
    const grow: Transforms[number] = (_row, start, end, _format, sink) => {
      const n = 3 * (end - start) + 600; // past the sink's first kilobyte within a row
      const out = sink.reserve(n);
      out.fill(0x2b, sink.at, sink.at + n);
      return n;
    };
    const kinds = [null, star, grow, same, toNull, (() => KEEP) as Transforms[number], (() => SQL_NULL) as Transforms[number]];
    for (let i = 0; i < 500; i++) {
      const rows = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => Array.from({ length: Math.floor(rand() * 12) }, () => (rand() < 0.1 ? null : Buffer.from('ab c'.repeat(Math.floor(rand() * 10))))));
      const bodies = rows.map(body);
      const chunk = Buffer.concat(bodies.flatMap((b) => [Buffer.from('pre'), b]));
      const transforms: Transforms = Array.from({ length: 12 }, () => kinds[Math.floor(rand() * kinds.length)]!);
      // Every row of the chunk is prepared (queued) before any is written, as the relay does.
      let at = 0;
      const queued: Buffer[] = [];
      for (const b of bodies) {
        at += 3;
        const expected = transformDataRow(b, transforms, [0]);
        const size = rewriter.prepare(chunk, at, at + b.length, transforms, [0]);
        if (expected === null) expect(size).toBe(-1);
        else {
          expect(size).toBe(expected.length);
          queued.push(expected);
        }
        at += b.length;
      }
      expect(rewriter.queued).toBe(queued.length);
      queued.forEach((expected, k) => {
        const into = Buffer.alloc(expected.length + 20, 0x7e);
        rewriter.write(k, into, 10);
        expect(into.subarray(10, 10 + expected.length)).toEqual(expected);
        expect([...into.subarray(0, 10), ...into.subarray(10 + expected.length)].every((x) => x === 0x7e)).toBe(true);
      });
      rewriter.clear();
      expect(rewriter.queued).toBe(0);
      expect(chunk).toEqual(Buffer.concat(bodies.flatMap((b) => [Buffer.from('pre'), b]))); // never written to
    }
  });
});

describe('RowRewriter with batched replacements', () => {
  test('hash tokens of a whole chunk of queued rows, settled once, are the tokens of each row alone', () => {
    const key = Buffer.from('a hash key');
    const hash = columnMasker({ column: 'x', type: 'other', method: 'hash' }, 1043, false, key).write;
    const intHash = columnMasker({ column: 'x', type: 'other', method: 'hash' }, 20, false, key).write;
    const partial = columnMasker({ column: 'x', type: 'other', method: 'partial', keep: 4 }, 25, false, key).write;
    const transforms: Transforms = [hash, null, partial, intHash, hash];
    const rows = Array.from({ length: 300 }, (_, g) => body([
      Buffer.from(`ACCT-${String(g).padStart(12, '0')}`), Buffer.from('clear'), Buffer.from(`${g}-45-6789`),
      g % 7 === 0 ? null : Buffer.from(String(g * 1_000_003 - 5)), Buffer.from('x'.repeat(g % 90)),
    ]));
    const chunk = Buffer.concat(rows);
    const expected = rows.map((b) => transformDataRow(b, transforms, [0])!);
    const rewriter = new RowRewriter();
    let at = 0;
    for (const b of rows) {
      const k = rewriter.queued;
      expect(rewriter.prepare(chunk, at, at + b.length, transforms, [0])).toBe(expected[k]!.length);
      at += b.length;
    }
    const out = Buffer.alloc(expected.reduce((n, e) => n + e.length, 0));
    let w = 0;
    for (let k = 0; k < rows.length; k++) {
      rewriter.write(k, out, w);
      w += rewriter.sizeOf(k);
    }
    expect(out).toEqual(Buffer.concat(expected));
    expect(out.toString('latin1')).not.toContain('ACCT-000000000001');
    expect(out.toString('latin1')).toContain('***-**-6789');
  });

  test('a placeholder never settled shows nothing of the value', () => {
    const hash = columnMasker({ column: 'x', type: 'other', method: 'hash' }, 25, false, Buffer.from('k')).write;
    const sink = new ValueSink();
    const value = Buffer.from('123-45-6789');
    const n = hash(value, 0, value.length, 0, sink);
    expect(sink.bytes.subarray(0, n).toString()).toBe('***-**-****');
    sink.settle();
    expect(sink.bytes.subarray(0, n).toString()).toMatch(/^[0-9]{3}-[0-9]{2}-[0-9]{4}$/);
  });
});

describe('value-sink', () => {
  test('reserve grows the buffer and keeps what was written before `at`', () => {
    const sink = new ValueSink(4);
    sink.write(Buffer.from('abcd'), 0, 4);
    sink.at = 4;
    const grown = sink.reserve(100);
    expect(grown.length).toBeGreaterThanOrEqual(104);
    expect(grown.subarray(0, 4).toString()).toBe('abcd');
    expect(sink.write(Buffer.from('x'.repeat(70)), 10, 70)).toBe(60); // a long copy
    expect(sink.bytes.subarray(4, 64).toString()).toBe('x'.repeat(60));
  });

  test('applyTransform: the value itself when kept, null for SQL NULL, else a copy of its own', () => {
    const value = Buffer.from('123-45-6789');
    expect(applyTransform(same!, value, 0)).toBe(value);
    expect(applyTransform(toNull!, value, 0)).toBeNull();
    const first = applyTransform(upper!, Buffer.from('abc'), 0)!;
    const second = applyTransform(upper!, Buffer.from('xyz'), 0)!;
    expect([first.toString(), second.toString()]).toEqual(['ABC', 'XYZ']); // the scratch is not shared
  });
});
