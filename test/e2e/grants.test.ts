/**
 * Time-bound access grants, as a contractor meets them (`access_by_grant`): refused before a
 * grant, with the command that asks for one; asks (`hoop request --duration`); a dba approves;
 * connects; the open session is ended with a FATAL when the grant ends; refused again after.
 * The gateway's store is PostgreSQL too, so the grant lookup runs on that backend end to end.
 */
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { apiCall, bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { runHoop } from '../cli/helpers.js';
import { tryTunnel, tunnelClient } from '../gateway/ws-client.js';

const upstream = inject('upstream');
let storeDb: Awaited<ReturnType<typeof createTestDatabase>>;
let gw: TestGateway;

beforeAll(async () => {
  storeDb = await createTestDatabase(upstream, 'grants_store');
  const s = storeDb.info;
  gw = await startTestGateway({
    upstream,
    store: `postgres://${s.users.trust}@${s.host}:${s.port}/${s.database}`,
    apiKeys: [{ name: 'cora', groups: ['contractors'] }, { name: 'bob', groups: ['dba'] }, { name: 'alice', groups: ['analysts'] }],
    connections: [bankConnection(upstream, { access: ['dba'], access_by_grant: ['contractors'], approval: { approvers: ['dba'], grant_max: '1h', rules: [] } })],
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await storeDb?.drop();
});

const api = (method: 'GET' | 'POST', path: string, who: string, body?: unknown) => apiCall(gw, method, path, who, body);

const hoop = (who: string, argv: string[]) => runHoop(argv, { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys[who]! } });
const bankFor = async (who: string) => (await api('GET', '/connections', who)).json.find((c: { name: string }) => c.name === 'bank');
const ASK = 'ask for one with: hoop request bank --duration 1h --reason "…"';

describe('access_by_grant', () => {
  test('refused before a grant (tunnel, pre-check, hoop connect), with the command that asks; members of access need none; no grant over grant_max', async () => {
    const refused = await tryTunnel(gw.url, 'bank', gw.keys['cora']);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({
      code: 'HOOP_FORBIDDEN',
      message: `apikey:cora may use connection bank only inside an approved access grant, and has none open now; ${ASK}`,
    });
    expect((await api('GET', '/connections/bank', 'cora')).status).toBe(403);
    expect(await bankFor('cora')).toMatchObject({ allowed: false, grant: { required: true, request: null, active_until: null, max_duration_ms: 3_600_000 } });
    const connect = await hoop('cora', ['connect', 'bank', '--', 'true']);
    expect(connect.code).toBe(5);
    expect(connect.stderr).toContain('only inside an approved access grant');
    expect(connect.stderr).toContain('Request access first: hoop request bank --duration 1h --reason');
    expect((await hoop('cora', ['connections'])).stdout).toMatch(/^bank\s+postgres\s+\S+\s+by grant\s+dba/m);
    // Neither in access nor in access_by_grant: refused as before, and no grant to ask for.
    expect((await tryTunnel(gw.url, 'bank', gw.keys['alice'])).body.error.message).toContain('may not use connection bank');
    expect((await api('POST', '/connections/bank/requests', 'alice', { duration: '1h', reason: 'x' })).status).toBe(403);
    // A dba connects without a grant, and needs none.
    const dba = await tunnelClient(gw.url, 'bank', gw.keys['bob']!);
    expect((await dba.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await dba.end();
    expect((await api('POST', '/connections/bank/requests', 'bob', { duration: '1h', reason: 'x' })).status).toBe(400);
    const tooLong = await api('POST', '/connections/bank/requests', 'cora', { duration: '2h', reason: 'x' });
    expect(tooLong).toMatchObject({ status: 400, json: { error: { message: 'duration: at most 1h 0m on connection bank (grant_max)' } } });
    const denials = (await gw.store.readEvents({ types: ['access.denied'] })).filter((e) => e.data['stage'] === 'grant');
    expect(denials.length).toBeGreaterThanOrEqual(2);
    expect(denials[0]).toMatchObject({ actor: { subject: 'apikey:cora' }, connection: 'bank', data: { code: 'HOOP_FORBIDDEN' } });
  });

  test('asked for, approved, used; the open session ends with the grant, with a FATAL that says why; refused again after; all recorded', async () => {
    const asked = await hoop('cora', ['request', 'bank', '--duration', '2s', '--reason', 'INC-7: fix the ledger', '--no-wait']);
    expect(asked.code).toBe(8);
    const id = asked.stdout.trim();
    expect(id).toMatch(/^r-[0-9a-f]{8}$/);
    expect((await tryTunnel(gw.url, 'bank', gw.keys['cora'])).status).toBe(403); // pending is not approved
    const approved = await api('POST', `/reviews/${id}/approve`, 'bob', { comment: 'ok for INC-7' });
    expect(approved).toMatchObject({ status: 200, json: { kind: 'grant', status: 'approved', duration_ms: 2_000 } });
    const until_ = approved.json.expires_at as string;

    const client = await tunnelClient(gw.url, 'bank', gw.keys['cora']!);
    let ended: Error | null = null;
    client.on('error', (err: Error) => (ended ??= err)); // the FATAL; "Connection terminated" follows it
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect(await bankFor('cora')).toMatchObject({ allowed: true, grant: { required: true, request: id, active_until: until_ } });
    expect((await hoop('cora', ['connections'])).stdout).toContain(`grant until ${until_}`);

    const fatal = await until(() => ended, { timeoutMs: 10_000, what: 'the session ended by the grant' });
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(until_));
    expect(fatal.message).toBe(`hoop: your access grant ${id} to connection bank ended at ${until_}; ask for another with: hoop request bank --duration 1h --reason "…"`);
    expect((fatal as { code?: string }).code).toBe('57P01');
    await client.end().catch(() => {});

    const after = await tryTunnel(gw.url, 'bank', gw.keys['cora']);
    expect(after).toMatchObject({ status: 403, body: { error: { message: expect.stringContaining('has none open now') } } });

    const session = (await gw.store.listSessions({ connection: 'bank' })).find((s) => s.subject === 'apikey:cora')!;
    const events = await until(async () => {
      const all = await gw.store.readEvents({});
      // The grant's own end comes from the gateway's sweep of requests past their deadline.
      return all.some((e) => e.type === 'grant.ended' && e.session_id === null) && all.some((e) => e.type === 'session.end' && e.session_id === session.id) ? all : null;
    }, { timeoutMs: 8_000, what: 'grant.ended (the grant) and session.end recorded' });
    const of = (type: string, sessionId?: string | null) => events.filter((e) => e.type === type && (sessionId === undefined || e.session_id === sessionId));
    expect(of('approval.requested')).toMatchObject([{ actor: { subject: 'apikey:cora' }, data: { request: id, kind: 'grant', duration_ms: 2_000, reason: 'INC-7: fix the ledger' } }]);
    expect(of('grant.started')).toMatchObject([{ actor: { subject: 'apikey:bob' }, connection: 'bank', data: { request: id, requester: 'apikey:cora', until: until_, approvers: ['apikey:bob'] } }]);
    expect(Date.parse(of('grant.started')[0]!.data['from'] as string)).toBe(Date.parse(until_) - 2_000);
    expect(of('session.start', session.id)).toMatchObject([{ data: { grant: { request: id, until: until_ } } }]);
    const sessionEvents = events.filter((e) => e.session_id === session.id).map((e) => e.type);
    expect(sessionEvents.slice(-2)).toEqual(['grant.ended', 'session.end']);
    expect(of('grant.ended', session.id)).toMatchObject([{ actor: { subject: 'system:gateway' }, data: { request: id, requester: 'apikey:cora', until: until_, session_ended: true } }]);
    expect(of('session.end', session.id)[0]!.data['reason']).toBe(`access grant ${id} ended at ${until_}`);
    expect(of('grant.ended', null)).toMatchObject([{ actor: { subject: 'system:gateway' }, data: { request: id, until: until_ } }]);
    // Its end is not an undecided request's expiry.
    expect(of('approval.decided').filter((e) => e.data['request'] === id).map((e) => e.data['decision'])).toEqual(['approve']);
    expect((await api('GET', `/requests/${id}`, 'cora')).json.status).toBe('expired');
  });
});
