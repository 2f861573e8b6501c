import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HmacSha256 } from '../../../src/policy/masking/hmac.js';
import { jsSha256Compressor } from '../../../src/policy/masking/sha256-wasm.js';

describe('HmacSha256', () => {
  it('agrees with node:crypto for keys and messages of every length around the block edges', () => {
    for (const keyLength of [0, 5, 32, 63, 64, 65, 200]) {
      const key = Buffer.alloc(keyLength, keyLength + 1);
      const hmac = new HmacSha256(key);
      for (let length = 0; length <= 200; length++) {
        const message = Buffer.alloc(length);
        for (let i = 0; i < length; i++) message[i] = (i * 7 + length) & 0xff;
        expect(Buffer.from(hmac.digest(message)).toString('hex'), `key ${keyLength}, message ${length}`)
          .toBe(createHmac('sha256', key).update(message).digest('hex'));
      }
    }
  });

  it('hashes a window of a larger buffer, and writes into the same output each call', () => {
    const key = Buffer.from('k');
    const hmac = new HmacSha256(key);
    const buffer = Buffer.from('xx123-45-6789yy');
    const first = hmac.digest(buffer, 2, 13);
    expect(Buffer.from(first).toString('hex')).toBe(createHmac('sha256', key).update('123-45-6789').digest('hex'));
    expect(hmac.digest(Buffer.from('other'))).toBe(first);
  });

  it('digestWords is the same digest as big-endian words, for messages that end at every offset of a block', () => {
    const key = Buffer.from('a key');
    const hmac = new HmacSha256(key);
    const buffer = Buffer.alloc(300);
    for (let i = 0; i < buffer.length; i++) buffer[i] = (i * 13) & 0xff;
    for (let start = 0; start < 5; start++) {
      for (let end = start; end <= 140; end++) {
        const words = hmac.digestWords(buffer, start, end);
        const bytes = Buffer.alloc(32);
        for (let i = 0; i < 8; i++) bytes.writeInt32BE(words[i]!, 4 * i);
        expect(bytes.toString('hex'), `${start}..${end}`).toBe(createHmac('sha256', key).update(buffer.subarray(start, end)).digest('hex'));
      }
    }
  });
});

describe('HmacSha256 against node:crypto (an oracle that is not ours)', () => {
  it('agrees with createHmac for many random keys and values, also in windows of a larger buffer', () => {
    for (let round = 0; round < 300; round++) {
      const key = randomBytes(Math.floor(Math.random() * 160));
      const hmac = new HmacSha256(key);
      for (let n = 0; n < 10; n++) {
        const value = randomBytes(Math.floor(Math.random() * 300));
        const start = Math.floor(Math.random() * (value.length + 1));
        const end = start + Math.floor(Math.random() * (value.length - start + 1));
        const expected = createHmac('sha256', key).update(value.subarray(start, end)).digest('hex');
        expect(Buffer.from(hmac.digest(value, start, end)).toString('hex'), `key ${key.toString('hex')}, value ${value.subarray(start, end).toString('hex')}`).toBe(expected);
      }
    }
  });

  it('keeps instances apart: two keys interleaved give each its own MAC', () => {
    const [k1, k2] = [randomBytes(32), randomBytes(32)];
    const [h1, h2] = [new HmacSha256(k1), new HmacSha256(k2)];
    for (let n = 0; n < 50; n++) {
      const value = randomBytes(n * 3);
      const a = Buffer.from(h1.digest(value)).toString('hex');
      const b = Buffer.from(h2.digest(value)).toString('hex');
      expect(a).toBe(createHmac('sha256', k1).update(value).digest('hex'));
      expect(b).toBe(createHmac('sha256', k2).update(value).digest('hex'));
    }
  });
});

describe('HmacSha256 without WebAssembly (node --jitless)', () => {
  it('the JavaScript compression gives the same MACs as node:crypto', () => {
    for (let round = 0; round < 50; round++) {
      const key = randomBytes(Math.floor(Math.random() * 100));
      const hmac = new HmacSha256(key, jsSha256Compressor());
      const value = randomBytes(Math.floor(Math.random() * 200));
      expect(Buffer.from(hmac.digest(value)).toString('hex')).toBe(createHmac('sha256', key).update(value).digest('hex'));
    }
  });
});
