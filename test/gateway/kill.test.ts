/**
 * `hoop sessions kill` end to end: a real pg client in a session through the tunnel, killed
 * through the HTTP API (and the CLI) of the same gateway (SQLite), or of another replica
 * sharing a PostgreSQL store. The client gets the FATAL naming who ended it and why; what ran
 * upstream is cancelled; the record says who asked and why the session ended.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { bankConnection, newApiKey, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { runningPids, untilRunning } from '../helpers/postgres.js';
import { runHoop } from '../cli/helpers.js';
import { tunnelClient } from './ws-client.js';

const upstream = inject('upstream');

async function kill(gw: TestGateway, who: string, sessionId: string, body?: unknown) {
  const res = await request(`${gw.url}/api/v1/sessions/${sessionId}/kill`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gw.keys[who]!}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as any };
}

/** A session of bob's running `statement` upstream; resolves once PostgreSQL shows it running. */
async function busySession(gw: TestGateway, statement: string) {
  const client = await tunnelClient(gw.url, 'bank', gw.keys['bob']!, { user: 'bob', application: 'kill-test' });
  const running = client.query(statement).then(() => null, (err: Error) => err);
  await untilRunning(upstream, statement);
  const [session] = await gw.store.listSessions({ subject: 'apikey:bob', limit: 1 });
  expect(session?.ended_at).toBeNull();
  return { client, running, id: session!.id };
}

async function expectKilledRecord(gw: TestGateway, id: string, reason: string) {
  await expect.poll(async () => (await gw.store.getSession(id))?.session.end_reason, { timeout: 5_000 }).toBe(`killed by apikey:root: ${reason}`);
  const events = (await gw.store.getSession(id))!.events;
  const killEvent = events.find((e) => e.type === 'session.kill')!;
  expect(killEvent.actor).toMatchObject({ subject: 'apikey:root' });
  expect(killEvent.data).toEqual({ reason, user: 'apikey:bob' });
  const end = events.find((e) => e.type === 'session.end')!;
  expect(end.data).toMatchObject({ reason: `killed by apikey:root: ${reason}`, error: `hoop: this session was ended by apikey:root: ${reason}` });
  // Recorded in order: the request, then the end it caused.
  expect(killEvent.seq).toBeLessThan(end.seq);
}

describe('one gateway (SQLite store)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ upstream });
  });
  afterAll(async () => {
    await gw?.close();
  });

  test('an admin ends a live session: the client gets the FATAL, the statement is cancelled, the record says who and why', async () => {
    const statement = 'SELECT pg_sleep(60) AS kill_sqlite';
    const { running, id } = await busySession(gw, statement);
    const r = await kill(gw, 'root', id, { reason: 'runaway\nquery, INC-7' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ session_id: id, requested_by: 'apikey:root', reason: 'runaway query, INC-7' });
    expect(r.body.ended_at).toEqual(expect.any(String));
    const err = (await running) as Error & { code?: string };
    expect(err.message).toBe('hoop: this session was ended by apikey:root: runaway query, INC-7');
    expect(err.code).toBe('57P01');
    await expect.poll(() => runningPids(upstream, statement)).toEqual([]);
    await expectKilledRecord(gw, id, 'runaway query, INC-7');
    // Ended: a second kill finds no live session.
    expect((await kill(gw, 'root', id)).status).toBe(404);
  });

  test('admins only (403, before any lookup); 404 for an unknown session; 400 for a bad id or body; POST only', async () => {
    const statement = 'SELECT pg_sleep(60) AS kill_refusals';
    const { client, running, id } = await busySession(gw, statement);
    try {
      for (const who of ['bob', 'alice', 'carol']) {
        const r = await kill(gw, who, id);
        expect(r.status).toBe(403);
        expect(r.body.error).toMatchObject({ code: 'HOOP_FORBIDDEN', message: 'only admins may end sessions' });
      }
      expect((await kill(gw, 'root', '00000000-0000-4000-8000-000000000000')).status).toBe(404);
      expect((await kill(gw, 'root', id.slice(0, 8))).status).toBe(400);
      expect((await kill(gw, 'root', id, '{not json')).status).toBe(400);
      expect((await kill(gw, 'root', id, { reason: 'x', extra: 1 })).status).toBe(400);
      expect((await kill(gw, 'root', id, { reason: 'x'.repeat(501) })).status).toBe(400);
      const get = await request(`${gw.url}/api/v1/sessions/${id}/kill`, { headers: { authorization: `Bearer ${gw.keys['root']!}` } });
      expect(get.statusCode).toBe(405);
      expect(get.headers['allow']).toBe('POST');
      await get.body.dump();
      // None of that touched the session.
      expect((await gw.store.getSession(id))!.session.ended_at).toBeNull();
      expect(await runningPids(upstream, statement)).toHaveLength(1);
    } finally {
      await kill(gw, 'root', id);
      await running;
      await client.end().catch(() => {});
    }
  });

  test('`hoop sessions kill <short id> --reason` ends it (exit 0); a non-admin is refused with exit 5', async () => {
    const statement = 'SELECT pg_sleep(60) AS kill_cli';
    const { running, id } = await busySession(gw, statement);
    const env = (who: string) => ({ env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys[who]! } });
    const denied = await runHoop(['sessions', 'kill', id], env('bob'));
    expect(denied.code).toBe(5);
    expect(denied.stderr.split('\n')[0]).toBe('hoop: only admins may end sessions');
    const r = await runHoop(['sessions', 'kill', id.slice(0, 8), '--reason', 'from the cli'], env('root'));
    expect(r.stderr).toBe(`✓ Session ${id} ended (killed by apikey:root: from the cli).\n`);
    expect(r.code).toBe(0);
    expect(((await running) as Error).message).toBe('hoop: this session was ended by apikey:root: from the cli');
    await expectKilledRecord(gw, id, 'from the cli');
    const shown = await runHoop(['sessions', 'show', id], env('root'));
    expect(shown.stdout).toContain('killed by apikey:root: from the cli');
    expect(shown.stdout).toMatch(/session\.kill {2}by apikey:root {2}\{"reason":"from the cli","user":"apikey:bob"\}/);
    const again = await runHoop(['sessions', 'kill', id, '--json'], env('root'));
    expect(again.code).toBe(1);
    expect(again.stderr.split('\n')[0]).toBe(`hoop: no live session ${id}`);
  });
});

describe('two gateway replicas on one PostgreSQL store', () => {
  const database = `hoop_kill_${randomBytes(6).toString('hex')}`;
  const admin = () => new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: upstream.database });
  let a: TestGateway;
  let b: TestGateway;

  beforeAll(async () => {
    const c = admin();
    await c.connect();
    await c.query(`CREATE DATABASE ${database}`).finally(() => c.end());
    const store = `postgres://${upstream.users.trust}@${upstream.host}:${upstream.port}/${database}`;
    // The same keys on both, as replicas share one config.
    const keys = { root: newApiKey(), bob: newApiKey() };
    const apiKeys = [{ name: 'root', groups: ['platform'] }, { name: 'bob', groups: ['dba'] }];
    a = await startTestGateway({ upstream, store, apiKeys, keys, connections: [bankConnection(upstream)] });
    b = await startTestGateway({ upstream, store, apiKeys, keys, connections: [bankConnection(upstream)] });
  }, 60_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    const c = admin();
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).finally(() => c.end());
  });

  test('a kill sent to one replica ends the session another holds', async () => {
    const statement = 'SELECT pg_sleep(60) AS kill_replica';
    const { running, id } = await busySession(b, statement);
    const r = await kill(a, 'root', id, { reason: 'moved to the other replica' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ session_id: id, requested_by: 'apikey:root', reason: 'moved to the other replica', ended_at: expect.any(String) });
    expect(((await running) as Error).message).toBe('hoop: this session was ended by apikey:root: moved to the other replica');
    await expect.poll(() => runningPids(upstream, statement)).toEqual([]);
    await expectKilledRecord(a, id, 'moved to the other replica');
    expect((await kill(b, 'root', id)).status).toBe(404);
  });
});
