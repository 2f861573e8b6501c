import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { TokenMac } from '../../../src/policy/masking/token-mac.js';
import { cmac, tokenKeys, tokenStream } from '../../helpers/hash-token.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-token-mac-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** AES-256-CMAC by the openssl command: an implementation that shares nothing with hoop's. */
function opensslCmac(key: Buffer, message: Buffer): string {
  const file = join(dir, 'message');
  writeFileSync(file, message);
  const out = execFileSync('openssl', ['mac', '-cipher', 'AES-256-CBC', '-macopt', `hexkey:${key.toString('hex')}`, '-in', file, 'CMAC'], { encoding: 'utf8' });
  return out.trim().toLowerCase();
}

/** Streams of `values` computed in one batch, each `want` blocks long, laid out as TokenMac.streams asks. */
function batchStreams(mac: TokenMac, values: Buffer[], want: number[]): Buffer[] {
  const slots = values.map((v) => (v.length & ~15) + 16);
  const messages = Buffer.from(new ArrayBuffer(slots.reduce((a, b) => a + b, 0)));
  const at = new Int32Array(values.length);
  const length = new Int32Array(values.length);
  const wants = Int32Array.from(want);
  const outAt = new Int32Array(values.length);
  let offset = 0;
  let blocks = 0;
  values.forEach((v, i) => {
    at[i] = offset;
    length[i] = v.length;
    v.copy(messages, offset);
    if (v.length === 0 || v.length % 16 !== 0) messages[offset + v.length] = 0x80; // the rest is zeros
    offset += slots[i]!;
    outAt[i] = blocks * 16;
    blocks += want[i]!;
  });
  const out = Buffer.from(new ArrayBuffer(blocks * 16));
  mac.streams(messages, at, length, wants, outAt, values.length, out);
  return values.map((_, i) => out.subarray(outAt[i]!, outAt[i]! + 16 * want[i]!));
}

describe('the test reference CMAC', () => {
  it('agrees with openssl for messages around every block edge', () => {
    const key = randomBytes(32);
    for (const length of [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 80, 200]) {
      const message = randomBytes(length);
      expect(cmac(key, message).toString('hex'), `length ${length}`).toBe(opensslCmac(key, message));
    }
  });
});

describe('TokenMac', () => {
  it('computes every value of a batch (up to four blocks each) as the reference does', () => {
    const key = randomBytes(24);
    const mac = new TokenMac(key);
    const values: Buffer[] = [];
    const want: number[] = [];
    for (let length = 0; length <= 64; length++) {
      values.push(randomBytes(length));
      want.push(1 + (length % 4));
    }
    for (let i = 0; i < 300; i++) {
      values.push(randomBytes(Math.floor(Math.random() * 40)));
      want.push(1 + Math.floor(Math.random() * 3));
    }
    const streams = batchStreams(mac, values, want);
    values.forEach((v, i) => expect(streams[i]!.toString('hex'), `value ${i} (${v.length} bytes)`).toBe(tokenStream(key, v, want[i]!).toString('hex')));
  });

  it('tag and stretch: a value of any length, read in windows, as the reference computes it', () => {
    const key = randomBytes(32);
    const mac = new TokenMac(key);
    for (const length of [0, 15, 16, 17, 65, 1000, 64 * 1024, 64 * 1024 + 16, 200_001]) {
      const buffer = randomBytes(length + 10);
      const value = buffer.subarray(5, 5 + length);
      const tag = mac.tag(buffer, 5, 5 + length);
      const reference = tokenStream(key, value, 4);
      expect(tag.toString('hex'), `length ${length}`).toBe(reference.subarray(0, 16).toString('hex'));
      expect(mac.stretch(tag, 1, 3).toString('hex')).toBe(reference.subarray(16).toString('hex'));
    }
    expect(() => batchStreams(mac, [randomBytes(65)], [1])).toThrow(RangeError);
  });

  it('gives one value the same stream alone and in any batch, and another key another stream', () => {
    const key = Buffer.from('the hash key');
    const mac = new TokenMac(key);
    const value = Buffer.from('ACCT-000000000001');
    const alone = batchStreams(mac, [value], [2])[0]!;
    const amid = batchStreams(mac, [randomBytes(60), value, randomBytes(3)], [1, 2, 1])[1]!;
    expect(amid.equals(alone)).toBe(true);
    expect(batchStreams(new TokenMac(Buffer.from('another key')), [value], [2])[0]!.equals(alone)).toBe(false);
    // The MAC's key is derived: the raw hash key is never the AES key.
    expect(cmac(key.length === 32 ? key : Buffer.alloc(32, 0), value).equals(alone.subarray(0, 16))).toBe(false);
    expect(cmac(tokenKeys(key).mac, value).equals(alone.subarray(0, 16))).toBe(true);
  });
});
