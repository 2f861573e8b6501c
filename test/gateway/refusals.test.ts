/**
 * Refusals leave a record: every refused attempt of an authenticated identity, whatever the path
 * (the pre-check route, the tunnel, another user's sessions, the audit log), is `access.denied`
 * with who, which connection and why; and the record answers by type (GET /api/v1/audit/events),
 * each read itself recorded as `audit.read`.
 */
import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { tryTunnel, tunnelClient } from './ws-client.js';

const upstream = inject('upstream');
let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway({
    upstream,
    connections: [
      bankConnection(upstream),
      bankConnection(upstream, { name: 'ledger', access: ['finance'] }),
      bankConnection(upstream, { name: 'vault', access: ['analysts'], require_reason: true }),
    ],
    apiKeys: [
      { name: 'alice', groups: ['analysts'] },
      { name: 'carol', groups: ['audit'] },
      { name: 'root', groups: ['platform'] },
    ],
  });
});
afterAll(async () => {
  await gw?.close();
});

async function get(path: string, key: string, headers: Record<string, string> = {}) {
  const res = await request(`${gw.url}${path}`, { headers: { authorization: `Bearer ${key}`, ...headers } });
  return { status: res.statusCode, json: (await res.body.json()) as any };
}

async function denials(match: (e: AuditEvent) => boolean, n = 1): Promise<AuditEvent[]> {
  let found: AuditEvent[] = [];
  await expect.poll(async () => (found = (await gw.store.readEvents({ types: ['access.denied'] })).filter(match)).length).toBeGreaterThanOrEqual(n);
  return found;
}

describe('access.denied on every path', () => {
  test('the pre-check GET /connections/{name}: outside the access groups (403), unknown (404), allowed (200)', async () => {
    const r = await get('/api/v1/connections/ledger', gw.keys['alice']!);
    expect(r.status).toBe(403);
    expect(r.json.error).toMatchObject({ code: 'HOOP_FORBIDDEN', message: 'apikey:alice may not use connection ledger (it requires one of the groups: finance)' });
    const [e] = await denials((x) => x.connection === 'ledger' && x.data['via'] === 'api');
    expect(e).toMatchObject({
      actor: { subject: 'apikey:alice', groups: ['analysts'] },
      source: { address: '127.0.0.1' },
      data: { via: 'api', stage: 'authorize', code: 'HOOP_FORBIDDEN', reason: r.json.error.message, path: '/api/v1/connections/ledger' },
    });
    const unknown = await get('/api/v1/connections/nosuch', gw.keys['alice']!);
    expect(unknown.status).toBe(404);
    await denials((x) => x.data['stage'] === 'connection' && x.data['requested'] === 'nosuch');
    const ok = await get('/api/v1/connections/bank', gw.keys['alice']!);
    expect(ok).toMatchObject({ status: 200, json: { name: 'bank', allowed: true, requires_reason: false } });
  });

  test('require_reason: no reason is refused before the upgrade, saying how to give one; with one the session opens and keeps it', async () => {
    const pre = await get('/api/v1/connections/vault', gw.keys['alice']!);
    expect(pre.status).toBe(403);
    expect(pre.json.error).toEqual({ code: 'HOOP_POLICY_DENIED', message: 'connection vault requires a reason for every session; give one with: hoop connect vault --reason "…"' });
    expect((await get('/api/v1/connections/vault', gw.keys['alice']!, { 'x-hoop-reason': '   ' })).status).toBe(403);
    expect((await get('/api/v1/connections/vault', gw.keys['alice']!, { 'x-hoop-reason': 'INC-9' })).json).toMatchObject({ name: 'vault', requires_reason: true });
    const t = await tryTunnel(gw.url, 'vault', gw.keys['alice']);
    expect(t.status).toBe(403);
    expect(t.body.error.message).toBe(pre.json.error.message);
    await denials((x) => x.connection === 'vault' && x.data['stage'] === 'reason' && x.data['via'] === 'tunnel');
    const client = await tunnelClient(gw.url, 'vault', gw.keys['alice']!, { reason: 'INC-9: refunds' });
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await client.end();
    const [s] = await gw.store.listSessions({ connection: 'vault' });
    expect(s).toMatchObject({ subject: 'apikey:alice', reason: 'INC-9: refunds' });
  });

  test('another user\'s sessions: the list is 403, a session id 404, both recorded with why', async () => {
    const sid = randomUUID();
    await gw.store.appendEvents([{
      id: randomUUID(), time: new Date().toISOString(), type: 'session.start', actor: { subject: 'apikey:root', email: null, groups: ['platform'], auth_method: 'api_key' },
      source: { address: '127.0.0.1', application: 'psql' }, connection: 'bank', session_id: sid, data: { reason: null },
    }]);
    expect((await get('/api/v1/sessions?user=root', gw.keys['alice']!)).status).toBe(403);
    expect((await get(`/api/v1/sessions/${sid}`, gw.keys['alice']!)).json.error.message).toBe(`no session ${sid}`);
    await denials((x) => x.data['stage'] === 'role' && x.data['user'] === 'root');
    const [probe] = await denials((x) => x.data['session'] === sid);
    expect(probe!.data).toMatchObject({ code: 'HOOP_NOT_FOUND', reason: `session ${sid} is another user's` });
    // Naming oneself by API key name is one's own list, not a refusal.
    expect((await get('/api/v1/sessions?user=alice', gw.keys['alice']!)).status).toBe(200);
    expect((await get('/api/v1/sessions?user=apikey%3Aalice', gw.keys['alice']!)).status).toBe(200);
  });
});

describe('GET /api/v1/audit/events', () => {
  test('auditors and admins list events by type, newest first; each read is recorded as audit.read', async () => {
    await get('/api/v1/connections/ledger', gw.keys['alice']!);
    await get('/api/v1/me', 'hoop_not-a-key');
    await expect.poll(async () => (await gw.store.readEvents({ types: ['auth.failed'] })).length).toBeGreaterThan(0);
    const r = await get('/api/v1/audit/events?type=access.denied,auth.failed&since=2020-01-01T00:00:00Z&limit=500', gw.keys['carol']!);
    expect(r.status).toBe(200);
    const types = new Set(r.json.map((e: AuditEvent) => e.type));
    expect(types).toEqual(new Set(['access.denied', 'auth.failed']));
    const seqs = r.json.map((e: AuditEvent) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
    const reads = await gw.store.readEvents({ types: ['audit.read'] });
    expect(reads.at(-1)).toMatchObject({
      actor: { subject: 'apikey:carol' },
      data: { path: '/api/v1/audit/events', filter: { types: ['access.denied', 'auth.failed'], since: '2020-01-01T00:00:00.000Z', until: null, limit: 500 }, events: r.json.length },
    });
    const family = await get('/api/v1/audit/events?type=auth.*&limit=1', gw.keys['root']!);
    expect(family.json).toHaveLength(1);
    expect(family.json[0].type).toBe('auth.failed');
  });

  test('others are refused (403, recorded); bad parameters are 400', async () => {
    const r = await get('/api/v1/audit/events?type=access.denied', gw.keys['alice']!);
    expect(r.status).toBe(403);
    expect(r.json.error).toMatchObject({ code: 'HOOP_FORBIDDEN', message: 'only admins and auditors may read the audit log' });
    await denials((x) => x.data['path'] === '/api/v1/audit/events' && x.actor?.subject === 'apikey:alice');
    for (const q of ['type=%25', 'type=', 'limit=0', 'since=yesterday', 'sort=asc', 'type=a&type=b']) {
      expect((await get(`/api/v1/audit/events?${q}`, gw.keys['carol']!)).status, q).toBe(400);
    }
  });
});

// Last in this file: it spends root's burst of recorded denials for the minute.
describe('a signed-in caller cannot flood the audit log with refusals', () => {
  test('past the burst an identity\'s denials are counted, not recorded; others are still recorded', async () => {
    const before = (await gw.store.readEvents({ types: ['access.denied'] })).filter((e) => e.actor?.subject === 'apikey:root').length;
    for (let k = 0; k < 60; k++) expect((await get('/api/v1/connections/ledger', gw.keys['root']!)).status).toBe(403);
    const ledger = () => gw.store.readEvents({ types: ['access.denied'] });
    // alice's next refusal is recorded: the bound is per identity.
    expect((await get(`/api/v1/connections/nosuch-${randomUUID().slice(0, 8)}`, gw.keys['alice']!)).status).toBe(404);
    await expect.poll(async () => (await ledger()).some((e) => e.actor?.subject === 'apikey:alice' && String(e.data['requested'] ?? '').startsWith('nosuch-'))).toBe(true);
    const rootRecorded = (await ledger()).filter((e) => e.actor?.subject === 'apikey:root').length - before;
    expect(rootRecorded).toBeGreaterThan(0);
    expect(rootRecorded + before).toBeLessThanOrEqual(20); // AUTH_FAILURE_BURST per minute
  });
});
