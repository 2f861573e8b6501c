/**
 * Exports stream with flat memory: a log of 60 000 events (30 000 statements, every fifth with a
 * 16 KB recorded result: 96 MB of results), appended straight to the store in
 * large batches, is exported as jsonl and as a bundle through the gateway's HTTP API while this
 * process (the gateway's) samples its heap. (60 000 rather than more: building the log through
 * the store's appends takes most of this file's time on a 2-core machine.)
 * What stays live (sampled after full collections, so garbage does not count; heap and Buffers)
 * may grow by a bounded working set — pages, payload batches, the bundle's window of recent
 * hashes and its report — never by anything proportional to the export, which is several times
 * larger.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createGunzip } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { UnsealedEvent } from '../../src/audit/event.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

// A full collection on demand, without a Node flag for the whole test run.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const EVENTS = 60_000;
const PAYLOADS = EVENTS / 10;
const BATCH = 5_000;
const MiB = 1024 * 1024;
let gw: TestGateway;
let spoolRoot: string;
let previousTmpdir: string | undefined;
const since = '2026-01-01T00:00:00.000Z';

beforeAll(async () => {
  spoolRoot = mkdtempSync(join(tmpdir(), 'hoop-xmem-'));
  gw = await startTestGateway({ upstream: inject('upstream') });
  previousTmpdir = process.env['TMPDIR'];
  process.env['TMPDIR'] = spoolRoot;
  const actor = { subject: 'apikey:alice', email: null, groups: ['analysts'], auth_method: 'api_key' as const };
  const t0 = Date.parse(since);
  const session = randomUUID();
  const blob = randomBytes(12_000).toString('base64'); // 16 KB of row data, shared: building the log stays cheap
  for (let b = 0; b < EVENTS / BATCH; b++) {
    const batch: UnsealedEvent[] = [];
    for (let i = 0; i < BATCH; i++) {
      const n = b * BATCH + i;
      const time = new Date(t0 + n * 10).toISOString();
      const q = `q${n >> 1}`;
      batch.push(n % 2 === 1
        ? { id: randomUUID(), time, type: 'query.end', actor, source: { address: '10.0.0.7', application: 'psql' }, connection: 'bank', session_id: session,
            data: { query_id: q, outcome: 'ok', rows: 1, bytes: 16_000, duration_ms: 1 },
            ...(n % 10 === 1 ? { payload: { 'result.sets': [{ columns: ['blob'], rows: [[`${n}:${blob}`]], tag: 'SELECT 1', statement: 0 }] } } : {}) }
        : { id: randomUUID(), time, type: 'query.start', actor, source: { address: '10.0.0.7', application: 'psql' }, connection: 'bank', session_id: session,
            data: { query_id: q, protocol: 'simple', statement: `SELECT blob FROM t WHERE id = ${n}` } });
    }
    await gw.store.appendEvents(batch);
  }
}, 120_000);

afterAll(async () => {
  await gw?.close();
  rmSync(spoolRoot, { recursive: true, force: true });
  if (previousTmpdir === undefined) delete process.env['TMPDIR'];
  else process.env['TMPDIR'] = previousTmpdir;
});

/** Reads the whole export, sampling the heap meanwhile; the bytes received and the heap's growth over its start. */
async function exportMeasured(format: string): Promise<{ bytes: number; growth: number }> {
  // What is live (after a full collection, so garbage not yet collected does not count), in the
  // JS heap and outside it (Buffers): an export held in memory would show in one or the other.
  const used = () => {
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  const before = used();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, used())), 400);
  try {
    const res = await request(`${gw.url}/api/v1/audit/export?format=${format}&since=${since}&until=2027-01-01T00:00:00Z`, { headers: { authorization: `Bearer ${gw.keys['carol']}` } });
    expect(res.statusCode).toBe(200);
    let bytes = 0;
    // A bundle is counted as the archive it holds, uncompressed.
    const body = format === 'bundle' ? res.body.pipe(createGunzip()) : res.body;
    for await (const chunk of body) bytes += (chunk as Buffer).length;
    return { bytes, growth: peak - before };
  } finally {
    clearInterval(sampler);
  }
}

describe('exports keep memory flat', () => {
  it('jsonl of 60 000 events', async () => {
    const { bytes, growth } = await exportMeasured('jsonl');
    expect(bytes).toBeGreaterThan(120 * MiB);
    expect(growth).toBeLessThan(32 * MiB);
  });

  it('a bundle of 60 000 events, and its spool is gone afterwards', async () => {
    const { bytes, growth } = await exportMeasured('bundle');
    expect(bytes).toBeGreaterThan(120 * MiB);
    expect(growth).toBeLessThan(64 * MiB); // the bundle also keeps its window of recent hashes and the report's lists
    expect(readdirSync(spoolRoot).filter((d) => d.startsWith('hoop-export-'))).toEqual([]);
    const created = (await gw.store.readEvents({ types: ['export.created'] })).at(-1)!;
    expect(created.data).toMatchObject({ format: 'bundle', complete: true, verified: true, counts: { payloads: PAYLOADS, payloads_pruned: 0, statements: EVENTS / 2 } });
    expect((created.data['counts'] as { events_full: number }).events_full).toBeGreaterThan(EVENTS);
  });
});
