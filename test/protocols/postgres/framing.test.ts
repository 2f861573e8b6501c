import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import { ProtocolError } from '../../../src/errors.js';
import {
  CANCEL_REQUEST_CODE,
  FrameReader,
  SSL_REQUEST_CODE,
  STARTUP_PACKET,
} from '../../../src/protocols/postgres/framing.js';

interface Seen { type: number; bytes: string }

function feed(reader: FrameReader, chunks: Buffer[]): Seen[] {
  const out: Seen[] = [];
  for (const chunk of chunks) {
    for (let batch = reader.push(chunk); ; batch = reader.push(Buffer.alloc(0))) {
      for (const f of batch.frames) out.push({ type: f.type, bytes: batch.buffer.subarray(f.start, f.end).toString('hex') });
      if (batch.frames.length === 0) break;
    }
  }
  return out;
}

const sslRequest = (() => { const b = Buffer.alloc(8); b.writeInt32BE(8); b.writeInt32BE(SSL_REQUEST_CODE, 4); return b; })();
const typedStream = Buffer.concat([
  serialize.query('select 1; select 2'),
  serialize.parse({ name: 's1', text: 'select $1::int', types: [23] }),
  serialize.bind({ statement: 's1', values: ['42'] }),
  serialize.describe({ type: 'P' }),
  serialize.execute({}),
  serialize.sync(),
  serialize.copyData(Buffer.alloc(3000, 7)),
  serialize.end(),
]);
const startupStream = Buffer.concat([sslRequest, serialize.startup({ user: 'u', database: 'd' }), typedStream]);

describe('FrameReader', () => {
  const whole = feed(new FrameReader({ startup: true }), [startupStream]);

  it('frames startup packets, then typed messages, from one chunk', () => {
    expect(whole.map((f) => f.type)).toEqual([STARTUP_PACKET, STARTUP_PACKET, ...'QPBDESdX'.split('').map((c) => c.charCodeAt(0))]);
    expect(whole.map((f) => f.bytes).join('')).toBe(startupStream.toString('hex'));
  });

  it('yields identical frames for a split at every offset', () => {
    for (let i = 0; i <= startupStream.length; i++) {
      const got = feed(new FrameReader({ startup: true }), [startupStream.subarray(0, i), startupStream.subarray(i)]);
      expect(got, `split at ${i}`).toEqual(whole);
    }
  });

  it('yields identical frames from 1-byte chunks and from three-way splits', () => {
    const bytes = [...startupStream].map((b) => Buffer.from([b]));
    expect(feed(new FrameReader({ startup: true }), bytes)).toEqual(whole);
    for (let i = 0; i < startupStream.length; i += 7) {
      for (let j = i; j <= startupStream.length; j += 131) {
        const got = feed(new FrameReader({ startup: true }), [startupStream.subarray(0, i), startupStream.subarray(i, j), startupStream.subarray(j)]);
        expect(got).toEqual(whole);
      }
    }
  });

  it('never changes bytes already handed out', () => {
    const reader = new FrameReader();
    const kept: { buf: Buffer; hex: string }[] = [];
    for (let i = 0; i < typedStream.length; i += 5) {
      const batch = reader.push(Buffer.from(typedStream.subarray(i, i + 5)));
      for (const f of batch.frames) kept.push({ buf: batch.buffer.subarray(f.start, f.end), hex: batch.buffer.subarray(f.start, f.end).toString('hex') });
    }
    expect(kept.length).toBe(8);
    for (const k of kept) expect(k.buf.toString('hex')).toBe(k.hex);
  });

  it('reports a CancelRequest as one startup packet', () => {
    const cancel = serialize.cancel(1234, 5678);
    const got = feed(new FrameReader({ startup: true }), [cancel]);
    expect(got).toHaveLength(1);
    expect(Buffer.from(got[0]!.bytes, 'hex').readInt32BE(4)).toBe(CANCEL_REQUEST_CODE);
  });

  it('rejects a declared length below 4', () => {
    const bad = Buffer.from([0x51, 0, 0, 0, 3]);
    expect(() => new FrameReader().push(bad)).toThrow(ProtocolError);
    expect(() => new FrameReader().push(bad)).toThrow(/declared length 3 is below the minimum of 4/);
    expect(() => new FrameReader({ startup: true }).push(Buffer.from([0, 0, 0, 2]))).toThrow(/below the minimum/);
  });

  it('rejects a declared length above the limit before buffering the body', () => {
    const reader = new FrameReader({ maxFrameBytes: 1024 });
    const header = Buffer.from([0x51, 0, 0, 4, 1]); // 1025
    expect(() => reader.push(header)).toThrow(/declared length 1025 exceeds the limit of 1024 bytes/);
    expect(reader.pendingBytes).toBe(0);
    // The reader stays failed.
    expect(() => reader.push(serialize.sync())).toThrow(ProtocolError);
    // Exactly at the limit is fine.
    const ok = new FrameReader({ maxFrameBytes: 1024 });
    const frame = Buffer.alloc(1025); frame[0] = 0x64; frame.writeInt32BE(1024, 1);
    expect(ok.push(frame).frames).toHaveLength(1);
  });

  it('rejects a startup packet above 10000 bytes and a negative length', () => {
    const big = Buffer.alloc(8); big.writeInt32BE(10_001); big.writeInt32BE(196608, 4);
    expect(() => new FrameReader({ startup: true }).push(big)).toThrow(/exceeds the limit of 10000/);
    expect(() => new FrameReader().push(Buffer.from([0x51, 0xff, 0xff, 0xff, 0xff]))).toThrow(ProtocolError);
  });

  it('survives random garbage without crashing: either frames or a ProtocolError', () => {
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    let errors = 0;
    for (let n = 0; n < 500; n++) {
      const junk = Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)));
      const reader = new FrameReader({ startup: rand() < 0.5, maxFrameBytes: 1 << 20 });
      try {
        const batch = reader.push(junk);
        for (const f of batch.frames) expect(f.end).toBeLessThanOrEqual(batch.buffer.length);
      } catch (err) {
        expect(err).toBeInstanceOf(ProtocolError);
        errors++;
      }
    }
    expect(errors).toBeGreaterThan(0);
  });
});
