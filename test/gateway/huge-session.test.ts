/**
 * Issue 9, "Reading large sessions safely", at scale: one session with HOOP_HUGE_SESSION_MIB
 * (default 256) MiB of recorded payload — 1 MiB returned by each of that many statements, written
 * straight through store.appendEvents as the recorder would; 1024 reads the same way (live heap
 * +31 MiB) but takes minutes on a loaded 2-core machine — on a SQLite store, read in full
 * through the API and by `hoop sessions show` (heap-capped) at the same time, while another
 * session keeps running statements through the tunnel: the gateway's live heap stays far below
 * the session's size, the other session's statements complete during the read, listings stay
 * bounded (`GET /api/v1/sessions`, `GET /api/v1/audit/events` in byte-bounded pages, `hoop audit
 * events`), and every page read is recorded.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { request } from 'undici';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import type { Actor, UnsealedEvent } from '../../src/audit/event.js';
import { AUDIT_EVENTS_PAGE_BYTES, SESSION_PAGE_BYTES } from '../../src/gateway/routes.js';
import { BIN, childEnv, runBin } from '../cli/helpers.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { tunnelClient } from './ws-client.js';

const upstream = inject('upstream');
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;
const STATEMENTS = Number(process.env['HOOP_HUGE_SESSION_MIB'] ?? 256);
const bob: Actor = { subject: 'apikey:bob', email: null, groups: ['dba'], auth_method: 'api_key' };

let gw: TestGateway;
let id: string;
/** Just after the huge session's last event: the listings below look at it alone. */
let until: string;

beforeAll(async () => {
  gw = await startTestGateway({ upstream, connections: [bankConnection(upstream)], config: { audit: { payload_limit: '2MiB' } } });
  id = randomUUID();
  const base = { actor: bob, source: { address: '127.0.0.1', application: 'psql' }, connection: 'bank', session_id: id };
  const ev = (type: UnsealedEvent['type'], data: Record<string, unknown>, payload?: Record<string, unknown>): UnsealedEvent =>
    ({ id: randomUUID(), time: new Date().toISOString(), type, ...base, data, ...(payload ? { payload } : {}) });
  const cell = 'x'.repeat(MiB - 64);
  await gw.store.appendEvents([ev('session.start', { application: 'psql', database: 'bank' })]);
  for (let i = 0; i < STATEMENTS; i += 32) {
    const batch: UnsealedEvent[] = [];
    for (let j = i; j < Math.min(i + 32, STATEMENTS); j++) {
      batch.push(ev('query.start', { query_id: `q${j}`, statement: `select big from blobs where n = ${j}`, protocol: 'simple' }));
      batch.push(ev(
        'query.end',
        { query_id: `q${j}`, outcome: 'ok', error: null, command_tags: ['SELECT 1'], rows: 1, bytes: MiB, duration_ms: 3, result: { truncated: false, sha256: '0'.repeat(64) } },
        { 'result.sets': [{ columns: ['big'], rows: [[`${j}:${cell}`]], tag: 'SELECT 1', statement: 0 }] },
      ));
    }
    await gw.store.appendEvents(batch);
  }
  const [end] = await gw.store.appendEvents([ev('session.end', { reason: 'client closed', error: 'the end of a huge session' })]);
  until = new Date(Date.parse(end!.time) + 1).toISOString();
}, 180_000);
afterAll(async () => {
  await gw?.close();
});

test(`a session of ${STATEMENTS} MiB of payload is read through the API and hoop sessions show at once, with bounded gateway memory, while another session works`, async () => {
  const auth = { authorization: `Bearer ${gw.keys['root']!}` };
  // Another session, running statements one after another until the reads are done.
  const client = await tunnelClient(gw.url, 'bank', gw.keys['bob']!);
  let reading = true;
  let during = 0;
  const other = (async () => {
    while (reading) {
      const r = await client.query('SELECT count(*)::int AS n FROM generate_series(1, 100)');
      expect(r.rows[0].n).toBe(100);
      if (reading) during++;
    }
  })();

  gc();
  const base = process.memoryUsage().heapUsed;
  let peak = base;
  const sampler = setInterval(() => {
    gc();
    peak = Math.max(peak, process.memoryUsage().heapUsed);
  }, 250);
  let pages = 0;
  let largest = 0;
  let events = 0;
  let shown!: Awaited<ReturnType<typeof runBin>>;
  try {
    const api = (async () => {
      let after: number | null = null;
      do {
        const res = await request(`${gw.url}/api/v1/sessions/${id}${after ? `?after=${after}` : ''}`, { headers: auth });
        const text = await res.body.text();
        expect(res.statusCode).toBe(200);
        largest = Math.max(largest, Buffer.byteLength(text));
        const page = JSON.parse(text) as { events: { seq: number }[]; next: number | null };
        events += page.events.length;
        pages++;
        after = page.next;
      } while (after !== null);
    })();
    const cli = runBin(['sessions', 'show', id, '--rows', '1'], childEnv({ HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys['root']!, NODE_OPTIONS: '--max-old-space-size=160' }), 240_000)
      .then((r) => (shown = r));
    await Promise.all([api, cli]);
  } finally {
    clearInterval(sampler);
    reading = false;
    await other;
    await client.end();
  }
  const grew = peak - base;
  if (process.env['HOOP_TEST_LOG']) console.log(`${STATEMENTS} MiB session: ${pages} pages, live heap grew by ${Math.round(grew / MiB)} MiB, ${during} statements elsewhere meanwhile`);
  expect(events).toBe(2 * STATEMENTS + 2);
  expect(pages).toBeGreaterThan((STATEMENTS * MiB) / SESSION_PAGE_BYTES);
  expect(largest).toBeLessThanOrEqual(SESSION_PAGE_BYTES + 4096);
  expect(grew).toBeLessThan(Math.min(200 * MiB, Math.max(64 * MiB, (STATEMENTS * MiB) / 4)));
  expect(shown.stderr).toBe('');
  expect(shown.code).toBe(0);
  expect(shown.stdout).toContain(`select big from blobs where n = ${STATEMENTS - 1}`);
  expect(shown.stdout).toContain('the end of a huge session');
  // The other session's statements kept completing while the session was read.
  expect(during).toBeGreaterThan(0);
  // Every page either reader received is recorded.
  const reads = (await gw.store.readEvents({ types: ['audit.read'], payload: false })).filter((e) => e.data['session'] === id);
  expect(reads.length).toBeGreaterThanOrEqual(2 * ((STATEMENTS * MiB) / SESSION_PAGE_BYTES));
}, 300_000);

test('listings stay bounded: sessions by their start and end, audit events in byte-bounded pages, hoop audit events under a capped heap', async () => {
  const auth = { authorization: `Bearer ${gw.keys['root']!}` };
  const list = await request(`${gw.url}/api/v1/sessions?limit=10`, { headers: auth });
  const sessions = (await list.body.json()) as { id: string; statements: number }[];
  expect(sessions.find((s) => s.id === id)).toMatchObject({ statements: STATEMENTS });
  // Newest first, each page within the byte bound, the next one named by its header.
  const seen: number[] = [];
  let before: string | undefined;
  for (let n = 0; n < 3; n++) {
    const res = await request(`${gw.url}/api/v1/audit/events?type=query.end&limit=1000&until=${until}${before ? `&before=${before}` : ''}`, { headers: auth });
    const text = await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(AUDIT_EVENTS_PAGE_BYTES + 4096);
    const page = JSON.parse(text) as { seq: number; payload: unknown }[];
    expect(page.length).toBeGreaterThan(1);
    expect(page.length).toBeLessThan(1000);
    expect(page.every((e) => e.payload !== undefined)).toBe(true);
    seen.push(...page.map((e) => e.seq));
    before = res.headers['x-hoop-next-before'] as string;
    expect(Number(before)).toBe(page.at(-1)!.seq);
  }
  expect(seen).toEqual([...seen].sort((a, b) => b - a));
  expect(new Set(seen).size).toBe(seen.length);
  // The CLI follows the pages and prints as it goes: 200 MiB of events through a 160 MB heap.
  const out = await new Promise<{ code: number | null; lines: number; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'audit', 'events', '--type', 'query.end', '--until', until, '--limit', '200', '--json'], {
      env: childEnv({ HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys['root']!, NODE_OPTIONS: '--max-old-space-size=160' }), stdio: ['ignore', 'pipe', 'pipe'],
    });
    let lines = 0;
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (lines += d.split('\n').length - 1));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, lines, stderr }));
  });
  expect(out.stderr).toBe('');
  expect(out.code).toBe(0);
  expect(out.lines).toBe(Math.min(200, STATEMENTS) + 1); // one event per line, and the closing bracket
  // Many pages (about 7 events of 1 MiB each), each recorded.
  const reads = (await gw.store.readEvents({ types: ['audit.read'], newestFirst: true, limit: 1000, payload: false })).filter((e) => e.data['path'] === '/api/v1/audit/events');
  const cli = reads.filter((e) => (e.data['filter'] as { limit: number }).limit <= 200);
  expect(cli.length).toBeGreaterThan(Math.min(200, STATEMENTS) / 10);
  expect(cli[0]!.data).toMatchObject({ filter: { types: ['query.end'], until }, page: { before: expect.any(Number) } });
}, 120_000);
