/** RangeHash: the SHA-256 of the ranges in order, whether they extend each other, are short
 *  pieces of other buffers (gathered in the scratch), long, or mixed. */
import { createHash } from 'node:crypto';
import { expect, test } from 'vitest';
import { RangeHash } from '../../../src/protocols/postgres/range-hash.js';

test('random ranges of random buffers hash as their concatenation', () => {
  let seed = 5;
  const rand = (n: number) => Math.floor(((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000) * n);
  for (let round = 0; round < 200; round++) {
    const h = new RangeHash();
    const expected = createHash('sha256');
    let chunk = Buffer.alloc(0);
    let at = 0;
    for (let i = rand(120); i > 0; i--) {
      if (rand(4) === 0 || at >= chunk.length) { // a new buffer: adjacent ranges within it extend
        chunk = Buffer.from(Array.from({ length: 1 + rand(rand(3) === 0 ? 5000 : 400) }, () => rand(256)));
        at = rand(chunk.length);
      }
      const end = Math.min(chunk.length, at + rand(rand(2) === 0 ? 3000 : 300));
      h.add(chunk, at, end);
      expected.update(chunk.subarray(at, end));
      at = rand(3) === 0 ? end + rand(3) : end;
    }
    expect(h.digest()).toBe(expected.digest('hex'));
  }
  expect(new RangeHash().digest()).toBe(createHash('sha256').digest('hex'));
});
