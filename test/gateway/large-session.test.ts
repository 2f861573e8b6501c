/**
 * Issue 9, "Reading large sessions safely": a session of hundreds of statements that each
 * returned about 1 MiB (kept up to the payload limit) is read through a real gateway — the HTTP
 * API page by page and `hoop sessions show` (bin/hoop.js) — and neither the gateway nor the CLI
 * ever holds more than a page: the gateway's heap grows by far less than the session's size,
 * every page stays within the byte bound, and each page read is recorded as `audit.read`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg from 'pg';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { Actor, UnsealedEvent } from '../../src/audit/event.js';
import { SESSION_PAGE_BYTES } from '../../src/gateway/routes.js';
import { BIN, childEnv } from '../cli/helpers.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { spawn } from 'node:child_process';

const upstream = inject('upstream');

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;
const bob: Actor = { subject: 'apikey:bob', email: null, groups: ['dba'], auth_method: 'api_key' };

/** Appends a session of `statements` statements, each returning one ~1 MiB cell, as the recorder would. */
async function appendLargeSession(gw: TestGateway, statements: number): Promise<string> {
  const session_id = randomUUID();
  const cell = 'x'.repeat(MiB - 64); // one string shared by every event: the test itself stays small
  const base = { actor: bob, source: { address: '127.0.0.1', application: 'psql' }, connection: 'bank', session_id };
  const ev = (type: UnsealedEvent['type'], data: Record<string, unknown>): UnsealedEvent => ({ id: randomUUID(), time: new Date().toISOString(), type, ...base, data });
  await gw.store.appendEvents([ev('session.start', { application: 'psql', database: 'bank' })]);
  for (let i = 0; i < statements; i += 10) {
    const batch: UnsealedEvent[] = [];
    for (let j = i; j < Math.min(i + 10, statements); j++) {
      const query_id = `q${j}`;
      batch.push(ev('query.start', { query_id, statement: `select big from blobs where n = ${j}`, protocol: 'simple' }));
      batch.push(ev('query.end', {
        query_id, outcome: 'ok', error: null, command_tags: ['SELECT 1'], rows: 1, bytes: MiB, duration_ms: 3,
        result: { sets: [{ columns: ['big'], rows: [[`${j}:${cell}`]], tag: 'SELECT 1', statement: 0 }], truncated: false, sha256: '0'.repeat(64) },
      }));
    }
    await gw.store.appendEvents(batch);
  }
  await gw.store.appendEvents([ev('session.end', { reason: 'client closed', error: 'the end of a large session' })]);
  return session_id;
}

/**
 * Samples the live heap of this process (the gateway runs in it) while `work` runs: every 100 ms a
 * full GC, then heapUsed; the peak over the start. Garbage not yet collected is not counted, what
 * the gateway holds at that moment (a session it had loaded whole, say) is.
 */
async function heapGrowth(work: () => Promise<void>): Promise<number> {
  gc();
  const base = process.memoryUsage().heapUsed;
  let peak = base;
  const sample = () => {
    gc();
    peak = Math.max(peak, process.memoryUsage().heapUsed);
  };
  const timer = setInterval(sample, 100);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  if (process.env['HOOP_TEST_LOG']) console.log(`live heap grew by ${Math.round((peak - base) / MiB)} MiB`);
  return peak - base;
}

function runBin(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const backends = [
  { name: "SQLite", statements: 200, store: async () => undefined },
  {
    name: 'PostgreSQL',
    statements: 100,
    store: async () => {
      const database = `hoop_large_${randomBytes(6).toString('hex')}`;
      const c = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: upstream.database });
      await c.connect();
      await c.query(`CREATE DATABASE ${database}`).finally(() => c.end());
      return `postgres://${upstream.users.trust}@${upstream.host}:${upstream.port}/${database}`;
    },
  },
];

describe.each(backends)('a session of many 1 MiB results on a $name store', ({ statements, store }) => {
  let gw: TestGateway;
  let id: string;

  beforeAll(async () => {
    const url = await store();
    gw = await startTestGateway({ upstream, ...(url ? { store: url } : {}), connections: [bankConnection(upstream)] });
    id = await appendLargeSession(gw, statements);
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
  });

  async function readsOf(sessionId: string) {
    const reads = await gw.store.readEvents({ types: ['audit.read'] });
    return reads.filter((e) => e.data['session'] === sessionId);
  }

  test('the API serves it in pages within the byte bound, with bounded gateway memory, each page recorded', async () => {
    const total = statements * MiB;
    const seqs: number[] = [];
    let pages = 0;
    let largest = 0;
    const grew = await heapGrowth(async () => {
      let after: number | null | undefined;
      do {
        const res = await request(`${gw.url}/api/v1/sessions/${id}${after ? `?after=${after}` : ''}`, { headers: { authorization: `Bearer ${gw.keys['root']!}` } });
        const text = await res.body.text();
        expect(res.statusCode).toBe(200);
        largest = Math.max(largest, Buffer.byteLength(text));
        const page = JSON.parse(text) as { session: { id: string; statements: number }; events: { seq: number; type: string }[]; next: number | null };
        expect(page.session).toMatchObject({ id, statements });
        seqs.push(...page.events.map((e) => e.seq));
        pages++;
        after = page.next;
      } while (after !== null);
    });
    expect(seqs).toHaveLength(2 * statements + 2);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(pages).toBeGreaterThan(total / SESSION_PAGE_BYTES);
    expect(largest).toBeLessThanOrEqual(SESSION_PAGE_BYTES + 4096);
    expect(grew).toBeLessThan(100 * MiB);
    expect(grew).toBeLessThan(total / 2);
    // One audit.read per page, saying who read which events of which session.
    const reads = await readsOf(id);
    expect(reads).toHaveLength(pages);
    expect(reads[0]!.actor?.subject).toBe('apikey:root');
    expect(reads[0]!.data).toMatchObject({ path: `/api/v1/sessions/${id}`, session: id, page: { after: null, limit: 1000 }, first_seq: seqs[0] });
    expect(reads.flatMap((r) => [r.data['first_seq'], r.data['last_seq']])).toEqual(expect.arrayContaining([seqs[0], seqs.at(-1)]));
    for (const [i, r] of reads.entries()) if (i > 0) expect(r.data['first_seq']).toBeGreaterThan(reads[i - 1]!.data['last_seq'] as number);
  });

  test('hoop sessions show pages through it: every statement printed, CLI heap capped at 160 MB, gateway bounded', async () => {
    const readsBefore = (await readsOf(id)).length;
    let out!: Awaited<ReturnType<typeof runBin>>;
    const grew = await heapGrowth(async () => {
      // A CLI that held the session would die here: its old space is capped far below the session's size.
      out = await runBin(['sessions', 'show', id.slice(0, 8), '--rows', '1'], childEnv({ HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys['root']!, NODE_OPTIONS: '--max-old-space-size=160' }));
    });
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`Session ${id}`);
    expect(out.stdout).toContain(`Statements: ${statements}`);
    expect(out.stdout).toContain(`#${statements} `);
    expect(out.stdout).not.toContain(`#${statements + 1} `);
    expect(out.stdout).toContain('select big from blobs where n = 0');
    expect(out.stdout).toContain(`select big from blobs where n = ${statements - 1}`);
    expect(out.stdout).toContain('the end of a large session'); // session.end arrived on the last page
    expect(grew).toBeLessThan(100 * MiB);
    // Every page it fetched is recorded.
    expect((await readsOf(id)).length - readsBefore).toBeGreaterThan((statements * MiB) / SESSION_PAGE_BYTES);
  });

  test('a session someone else may not read stays missing, and the page parameters are checked', async () => {
    const get = async (path: string, who = 'root') => {
      const res = await request(`${gw.url}${path}`, { headers: { authorization: `Bearer ${gw.keys[who]!}` } });
      return { status: res.statusCode, body: (await res.body.json()) as any };
    };
    expect((await get(`/api/v1/sessions/${id}?limit=1`, 'alice')).status).toBe(404);
    const small = await get(`/api/v1/sessions/${id}?limit=1`);
    expect(small.body.events).toHaveLength(1);
    expect(small.body.events[0].type).toBe('session.start');
    const second = await get(`/api/v1/sessions/${id}?limit=2&after=${small.body.next}`);
    expect(second.body.events.map((e: { type: string }) => e.type)).toEqual(['query.start', 'query.end']);
    for (const bad of ['after=-1', 'after=x', 'limit=0', 'limit=1001', 'after=1&after=2', 'page=2']) {
      expect((await get(`/api/v1/sessions/${id}?${bad}`)).status, bad).toBe(400);
    }
    // Each page served was recorded, with the events it held; refused requests read nothing and are not.
    const reads = await readsOf(id);
    expect(reads.at(-2)!.data).toMatchObject({ session: id, page: { after: null, limit: 1 }, events: 1, first_seq: small.body.events[0].seq, last_seq: small.body.events[0].seq });
    expect(reads.at(-1)!.data).toMatchObject({ session: id, page: { after: small.body.next, limit: 2 }, events: 2, first_seq: second.body.events[0].seq, last_seq: second.body.events[1].seq });
    const count = reads.length;
    expect((await get(`/api/v1/sessions/${id}?limit=1&after=0`)).body.events[0].type).toBe('session.start');
    expect(await readsOf(id)).toHaveLength(count + 1);
  });
});
