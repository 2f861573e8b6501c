import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HmacSha256 } from '../../../src/policy/masking/hmac.js';

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
