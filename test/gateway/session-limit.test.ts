import { Duplex } from 'node:stream';
import { expect, test } from 'vitest';
import { LimitedSessionStream } from '../../src/gateway/session-limit.js';
import { errorResponse } from '../../src/protocols/postgres/messages.js';

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function fakeClient() {
  const written: Buffer[] = [];
  let ended = false;
  const client = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      written.push(chunk);
      cb();
    },
    final(cb) {
      ended = true;
      cb();
    },
  });
  return { client, output: () => Buffer.concat(written), ended: () => ended };
}

const write = (s: LimitedSessionStream, b: Buffer) => new Promise<void>((resolve) => s.write(b, () => resolve()));

test('terminate() waits for the backend message in flight, at every split offset, then sends the FATAL and ends', async () => {
  const a = message('D', Buffer.alloc(37, 1));
  const b = message('C', Buffer.from('SELECT 1\0'));
  const z = message('Z', Buffer.from('I')); // a 1-byte body: boundaries right after the header
  const all = Buffer.concat([a, b, z]);
  const boundaries = [a.length, a.length + b.length, all.length];
  const fatal = errorResponse({ severity: 'FATAL', code: '57P01', message: 'limit' });
  for (let k = 1; k < all.length; k++) {
    const { client, output, ended } = fakeClient();
    const s = new LimitedSessionStream(client);
    let engineSawEnd = false;
    s.on('end', () => (engineSawEnd = true));
    s.resume();
    await write(s, all.subarray(0, k));
    s.terminate('limit');
    await write(s, all.subarray(k));
    await new Promise((r) => setImmediate(r));
    const cut = boundaries.find((x) => x >= k)!;
    expect(output().equals(Buffer.concat([all.subarray(0, cut), fatal])), `split at ${k}`).toBe(true);
    expect(ended()).toBe(true);
    expect(engineSawEnd).toBe(true);
    expect(s.isTerminated).toBe(true);
  }
});

test('bytes pass through both ways untouched until then', async () => {
  const { client, output } = fakeClient();
  const s = new LimitedSessionStream(client);
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  client.push(Buffer.from('frontend bytes'));
  const backend = message('Z', Buffer.from('I'));
  await write(s, backend);
  await new Promise((r) => setImmediate(r));
  expect(Buffer.concat(got).toString()).toBe('frontend bytes');
  expect(output().equals(backend)).toBe(true);
});
