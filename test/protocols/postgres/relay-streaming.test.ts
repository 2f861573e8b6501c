/**
 * Past the kept payload, DataRow and CopyData are passed on as their bytes arrive, split across
 * upstream chunks (rows smaller than, around and larger than one 64 KiB socket read). The client
 * must get every byte, and query.end must count and hash exactly what it got.
 */
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { to as copyTo } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { FrameReader } from '../../../src/protocols/postgres/framing.js';
import { startHarness, until, upstreamConfig, type Harness } from './engine-harness.js';

const upstream = inject('upstream');

/** Row g is repeat('x', size(g)): 0 bytes up to ~300 KB, in no order that aligns with chunks. */
const ROWS = 400;
const size = (g: number) => (g * 7919) % 300_007;
const SIZES_SQL = `select repeat('x', (g * 7919) % 300007) as v from generate_series(1, ${ROWS}) g`;

function header(type: string, length: number): Buffer {
  const b = Buffer.alloc(5);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(length, 1);
  return b;
}

function expectedDataRows(): { hash: string; bytes: number } {
  const hash = createHash('sha256');
  let bytes = 0;
  for (let g = 1; g <= ROWS; g++) {
    const n = size(g);
    const head = Buffer.concat([header('D', 4 + 2 + 4 + n), Buffer.from([0, 1]), Buffer.alloc(4)]);
    head.writeInt32BE(n, 7);
    hash.update(head).update(Buffer.alloc(n, 'x'));
    bytes += head.length + n;
  }
  return { hash: hash.digest('hex'), bytes };
}

function expectedCopyData(): { hash: string; bytes: number; text: string } {
  const hash = createHash('sha256');
  let bytes = 0;
  const lines: string[] = [];
  for (let g = 1; g <= ROWS; g++) {
    const line = `${'x'.repeat(size(g))}\n`;
    lines.push(line);
    hash.update(header('d', 4 + line.length)).update(line);
    bytes += 5 + line.length;
  }
  return { hash: hash.digest('hex'), bytes, text: lines.join('') };
}

describe('FrameReader.pendingFrame / dropPendingFrame', () => {
  const messages = [header('T', 4 + 3), Buffer.from('abc'), header('D', 4 + 40), Buffer.alloc(40, 1), header('d', 4), header('C', 4 + 2), Buffer.from('ok')];
  const stream = Buffer.concat(messages);
  const whole = [
    { type: 'T', bytes: stream.subarray(0, 8) },
    { type: 'D', bytes: stream.subarray(8, 53) },
    { type: 'd', bytes: stream.subarray(53, 58) },
    { type: 'C', bytes: stream.subarray(58) },
  ];

  it('at every split offset, a dropped tail frame is exactly the bytes the caller then skips', () => {
    for (let k = 1; k < stream.length; k++) {
      const reader = new FrameReader();
      const seen: { type: string; bytes: Buffer }[] = [];
      let skip = 0;
      let streamedType = '';
      let streamedBytes: Buffer[] = [];
      for (const piece of [stream.subarray(0, k), stream.subarray(k)]) {
        const lead = Math.min(skip, piece.length);
        if (lead > 0) {
          streamedBytes.push(piece.subarray(0, lead));
          skip -= lead;
          if (skip === 0) seen.push({ type: streamedType, bytes: Buffer.concat(streamedBytes) });
        }
        if (lead === piece.length) continue;
        const batch = reader.push(piece.subarray(lead));
        for (const f of batch.frames) seen.push({ type: String.fromCharCode(f.type), bytes: batch.buffer.subarray(f.start, f.end) });
        const tail = reader.pendingFrame;
        if (!tail) continue;
        const have = reader.pendingBytes;
        expect(tail.total).toBe(whole.find((w) => w.type === String.fromCharCode(tail.type))!.bytes.length);
        streamedType = String.fromCharCode(tail.type);
        streamedBytes = [batch.buffer.subarray(batch.buffer.length - have)];
        skip = tail.total - have;
        reader.dropPendingFrame();
        expect(reader.pendingBytes).toBe(0);
      }
      expect(seen.map((x) => x.type).join(''), `split at ${k}`).toBe('TDdC');
      for (let i = 0; i < whole.length; i++) expect(seen[i]!.bytes.equals(whole[i]!.bytes), `split at ${k}, message ${i}`).toBe(true);
    }
  });
});

describe.each([
  { name: 'nothing kept', payloadLimit: 0 },
  { name: 'a few rows kept, then streamed', payloadLimit: 700_000 },
])('relay past the payload limit ($name)', ({ payloadLimit }) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ upstream: upstreamConfig(upstream), payloadLimit });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('delivers every DataRow and hashes exactly the bytes sent, for simple and extended queries', async () => {
    const c = await h.client();
    const want = expectedDataRows();
    for (const query of [{ text: SIZES_SQL, rowMode: 'array' as const }, { text: SIZES_SQL, values: [], rowMode: 'array' as const }]) {
      const before = h.ends().length;
      const r = await c.query(query);
      expect(r.rows.map((row: string[]) => row[0]!.length)).toEqual(Array.from({ length: ROWS }, (_, i) => size(i + 1)));
      expect(r.rows.every((row: string[]) => /^x*$/.test(row[0]!))).toBe(true);
      const end = await until(() => h.ends()[before]);
      expect(end).toMatchObject({ outcome: 'ok', rows: ROWS, bytes: want.bytes });
      expect(end.result.sha256).toBe(want.hash);
      expect(end.result.truncated).toBe(true);
      const kept = end.result.sets[0]!.rows.map((row) => row[0]!.length);
      expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => size(i + 1)));
      expect(kept.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(payloadLimit);
    }
    // The session is still in step after the streamed rows.
    expect((await c.query('select 41 + 1 as n')).rows).toEqual([{ n: 42 }]);
    await c.end();
  });

  it('delivers every CopyData of COPY TO STDOUT and hashes exactly the bytes sent', async () => {
    const c = await h.client();
    const want = expectedCopyData();
    const before = h.ends().length;
    const parts: Buffer[] = [];
    await pipeline(
      c.query(copyTo(`COPY (${SIZES_SQL}) TO STDOUT`)),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          parts.push(chunk);
          cb();
        },
      }),
    );
    expect(Buffer.concat(parts).toString('latin1') === want.text).toBe(true);
    const end = await until(() => h.ends()[before]);
    expect(end).toMatchObject({ outcome: 'ok', rows: ROWS, bytes: want.bytes, commandTags: [`COPY ${ROWS}`] });
    expect(end.result.sha256).toBe(want.hash);
    await c.end();
  });
});
