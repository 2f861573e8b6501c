import { dataWithPayload } from '../../src/audit/payload.js';
import { request } from 'undici';
import WebSocket from 'ws';
import { MAX_WS_PAYLOAD } from '../../src/gateway/tunnel.js';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { untilRunning } from '../helpers/postgres.js';
import { tryTunnel, tunnelClient } from './ws-client.js';

const upstream = inject('upstream');
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway({
    upstream,
    connections: [
      bankConnection(upstream),
      bankConnection(upstream, { name: 'ledger', access: ['finance'] }),
      bankConnection(upstream, { name: 'short', access: ['analysts'], max_session: '1500ms' }),
      bankConnection(upstream, { name: 'capped', access: ['analysts', 'dba'], max_sessions_per_user: 2 }),
    ],
  });
});
afterAll(async () => {
  await gw?.close();
});

async function events(sessionId?: string) {
  const all = await gw.store.readEvents({});
  return sessionId ? all.filter((e) => e.session_id === sessionId) : all;
}

describe('tunnel refusals happen before the upgrade, as HTTP with the JSON error body', () => {
  test('401 without a token, 401 with an unknown key', async () => {
    const none = await tryTunnel(gw.url, 'bank');
    expect(none.status).toBe(401);
    expect(none.contentType).toMatch(/^application\/json/);
    expect(none.body.error).toMatchObject({ code: 'HOOP_NOT_LOGGED_IN', message: 'missing bearer token' });
    const bad = await tryTunnel(gw.url, 'bank', 'hoop_not-a-key');
    expect(bad.status).toBe(401);
    expect(bad.body.error).toMatchObject({ code: 'HOOP_AUTH_REJECTED', message: 'unknown API key' });
  });

  test('404 for an unknown connection (only once authenticated)', async () => {
    const r = await tryTunnel(gw.url, 'nosuch', gw.keys['alice']);
    expect(r.status).toBe(404);
    expect(r.body.error).toMatchObject({ code: 'HOOP_NOT_FOUND', message: 'no connection named "nosuch"' });
    expect((await tryTunnel(gw.url, 'nosuch')).status).toBe(401);
  });

  test('403 when the identity is not in the access groups; recorded as access.denied (authorize)', async () => {
    const r = await tryTunnel(gw.url, 'ledger', gw.keys['alice']);
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('HOOP_FORBIDDEN');
    expect(r.body.error.message).toBe('apikey:alice may not use connection ledger (it requires one of the groups: finance)');
    // Admin role does not grant data access.
    expect((await tryTunnel(gw.url, 'bank', gw.keys['root'])).status).toBe(403);
    await expect.poll(async () => (await events()).some((e) => e.type === 'access.denied' && e.connection === 'ledger')).toBe(true);
    const e = (await events()).find((x) => x.type === 'access.denied' && x.connection === 'ledger')!;
    expect(e.actor).toMatchObject({ subject: 'apikey:alice', auth_method: 'api_key' });
    expect(e.source).toMatchObject({ address: '127.0.0.1' });
    expect(e.data).toMatchObject({ via: 'tunnel', stage: 'authorize', code: 'HOOP_FORBIDDEN', reason: r.body.error.message, path: '/api/v1/connections/ledger/tunnel' });
    const metrics = await (await request(`${gw.url}/metrics`)).body.text();
    expect(metrics).toMatch(/^hoop_tunnel_refusals_total\{status="403"\} [2-9]$/m);
    expect(metrics).toMatch(/^hoop_tunnel_refusals_total\{status="401"\} \d+$/m);
  });
});

describe('a session through the tunnel', () => {
  test('queries run upstream and are recorded write-ahead with the identity, source and reason', async () => {
    const client = await tunnelClient(gw.url, 'bank', gw.keys['bob'], { reason: 'ticket OPS-42: reconcile', user: 'bob', application: 'gw-test' });
    const simple = await client.query('SELECT current_user AS u, current_database() AS d');
    expect(simple.rows).toEqual([{ u: upstream.users.scram, d: upstream.database }]);
    const extended = await client.query('SELECT $1::int + $2::int AS sum', [40, 2]);
    expect(extended.rows).toEqual([{ sum: 42 }]);
    await expect(client.query('SELECT * FROM no_such_table')).rejects.toThrow(/no_such_table/);
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]); // still usable
    await client.end();

    const sessions = await gw.store.listSessions({ subject: 'apikey:bob' });
    expect(sessions).toHaveLength(1);
    const id = sessions[0]!.id;
    await expect.poll(async () => (await events(id)).some((e) => e.type === 'session.end')).toBe(true);
    const evs = await events(id);
    const start = evs.find((e) => e.type === 'session.start')!;
    expect(start).toMatchObject({
      connection: 'bank',
      actor: { subject: 'apikey:bob', email: null, groups: ['dba'], auth_method: 'api_key' },
      source: { address: '127.0.0.1', application: 'gw-test' },
      data: { path: 'tunnel', database: upstream.database, user: 'bob', requested_database: 'somedb', reason: 'ticket OPS-42: reconcile' },
    });
    const starts = evs.filter((e) => e.type === 'query.start');
    const ends = evs.filter((e) => e.type === 'query.end');
    expect(starts.map((e) => e.data['statement'])).toEqual([
      'SELECT current_user AS u, current_database() AS d',
      'SELECT $1::int + $2::int AS sum',
      'SELECT * FROM no_such_table',
      'SELECT 1 AS one',
    ]);
    expect(starts[1]!.data).toMatchObject({ protocol: 'extended', parameters: ['40', '2'] });
    // Write-ahead: each query.start precedes its query.end in the chain.
    for (const s of starts) {
      const end = ends.find((e) => e.data['query_id'] === s.data['query_id'])!;
      expect(end.seq).toBeGreaterThan(s.seq);
    }
    const byId = (i: number) => dataWithPayload(ends.find((e) => e.data['query_id'] === starts[i]!.data['query_id'])!);
    expect(byId(1)).toMatchObject({ outcome: 'ok', rows: 1, command_tags: ['SELECT 1'], result: { sets: [{ columns: ['sum'], rows: [['42']], tag: 'SELECT 1', statement: 0 }], truncated: false } });
    expect(byId(2)).toMatchObject({ outcome: 'error', error: { code: '42P01' } });
    expect(evs.at(-1)!.type).toBe('session.end');
  });

  test('max_session ends the session with a FATAL that says why, and session.end records it', async () => {
    const client = await tunnelClient(gw.url, 'short', gw.keys['alice']);
    const ended = new Promise<Error>((resolve) => client.on('error', resolve));
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    const err = await ended;
    expect(err.message).toMatch(/reached the 1\.5 s limit of connection short/);
    expect((err as any).code).toBe('57P01');
    await expect(client.query('SELECT 2')).rejects.toThrow();
    const [s] = await gw.store.listSessions({ connection: 'short' });
    await expect.poll(async () => (await events(s!.id)).find((e) => e.type === 'session.end')?.data['reason']).toBe('session limit reached (max_session 1.5 s)');
  });

  test('max_sessions_per_user: one identity cannot open more; others can; cancels still pass; a closed session frees its place', async () => {
    const first = await tunnelClient(gw.url, 'capped', gw.keys['alice']!);
    const second = await tunnelClient(gw.url, 'capped', gw.keys['alice']!);
    const third = await tunnelClient(gw.url, 'capped', gw.keys['alice']!).catch((e: Error) => e);
    expect(third).toMatchObject({
      message: 'hoop: session refused: apikey:alice already has 2 open sessions on connection capped, the limit (max_sessions_per_user 2); close one to open another',
      code: '42501',
    });
    // A cancel travels on a tunnel of its own: at the limit it still reaches the statement.
    const SLEEP = 'SELECT pg_sleep(30) AS capped_cancel';
    const sleeping = first.query(SLEEP).catch((e: Error) => e);
    await untilRunning(upstream, SLEEP); // a cancel that arrives before the statement is lost
    const cancel = new WebSocket(`${gw.url.replace(/^http/, 'ws')}/api/v1/connections/capped/tunnel`, { headers: { authorization: `Bearer ${gw.keys['alice']}` } });
    await new Promise<void>((resolve) => cancel.on('open', () => resolve()));
    const { serialize } = await import('pg-protocol');
    cancel.send(serialize.cancel((first as unknown as { processID: number }).processID, (first as unknown as { secretKey: number }).secretKey));
    expect(await sleeping).toMatchObject({ code: '57014' });
    cancel.close();
    // Another identity has places of its own.
    const bobs = await tunnelClient(gw.url, 'capped', gw.keys['bob']!);
    expect((await bobs.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await first.end();
    await expect.poll(async () => (await tunnelClient(gw.url, 'capped', gw.keys['alice']!).then((c) => c.end().then(() => true), () => false))).toBe(true);
    await Promise.all([second.end(), bobs.end()]);
    const refusals = (await events()).filter((e) => e.type === 'access.denied' && e.data['stage'] === 'limit');
    expect(refusals.length).toBeGreaterThanOrEqual(1);
    expect(refusals[0]!.actor).toMatchObject({ subject: 'apikey:alice' });
  });

  test('a WebSocket message over the size limit closes the tunnel with 1009 (message too big)', async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/api/v1/connections/bank/tunnel`, { headers: { authorization: `Bearer ${gw.keys['alice']}` } });
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('error', () => {});
    await new Promise<void>((resolve) => ws.on('open', () => resolve()));
    ws.send(Buffer.alloc(MAX_WS_PAYLOAD + 1));
    expect(await closed).toBe(1009);
  });
});

test('an unreachable upstream: psql is told without infrastructure details; the gateway log and session.end\'s detail have them', async () => {
  const { freePort } = await import('../../src/demo/postgres-cluster.js');
  const { default: pino } = await import('pino');
  const { Writable } = await import('node:stream');
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(JSON.parse(chunk.toString())), cb()) });
  const port = await freePort();
  const down = await startTestGateway({ upstream, connections: [bankConnection(upstream, { name: 'down', upstream: { ...bankConnection(upstream).upstream as object, port } })], logger: pino({ level: 'info' }, sink) });
  try {
    const err = await tunnelClient(down.url, 'down', down.keys['alice']!).catch((e: Error) => e);
    expect((err as Error).message).toBe("hoop: the database behind this connection is unreachable from the gateway; an administrator can find the cause in the gateway's log");
    await expect.poll(() => lines.find((l) => l['msg'] === 'could not connect to the upstream database')?.['err']).toMatch(new RegExp(`^upstream 127\\.0\\.0\\.1:${port}: could not connect: .*ECONNREFUSED`));
    await expect.poll(async () => (await down.store.readEvents({})).find((e) => e.type === 'session.end')?.data).toMatchObject({
      reason: 'upstream-failed', error: (err as Error).message.replace(/^hoop: /, ''), detail: expect.stringContaining(`127.0.0.1:${port}`),
    });
  } finally {
    await down.close();
  }
});
